# Aliases for the bootstrap in tasks.py (which needs only Python and pip).
.PHONY: demo test env bench
demo:
	python3 tasks.py demo
test:
	python3 tasks.py test
env:
	python3 tasks.py env
bench: env
	.venv/bin/python benchmarks/read.py
