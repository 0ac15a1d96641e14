# Aliases for the bootstrap in tasks.py (which needs only Python and pip).
.PHONY: demo test env bench detector
demo:
	python3 tasks.py demo
test:
	python3 tasks.py test
env:
	python3 tasks.py env
bench: env
	for b in read dedup_quality dedup_speed score reference coder mix true_ceiling commit; do .venv/bin/python benchmarks/$$b.py; done
detector: env
	.venv/bin/synthcap train-detector --data ../shared/data/detect/*.jsonl.gz --out transforms/score/default_model
