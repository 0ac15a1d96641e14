"""`TagProvenance`: registered domain, pre-LLM flag and declared signals, taken while the raw record is at hand."""
from __future__ import annotations

from typing import Any

import apache_beam as beam
import tldextract

from transforms.accounting import count
from transforms.dates import is_pre_llm
from transforms.document import Document, replace
from transforms.provenance.signals import not_observable, page_signals
from transforms.provenance.unicode import has_c2pa_text_wrapper, invisible_counts



class _Tag(beam.DoFn):
    def setup(self):
        # The bundled public-suffix snapshot, never a network fetch.
        self._extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def registered_domain(self, doc: Document) -> str | None:
        host = doc.domain or doc.url
        if not host:
            return None
        r = self._extract(host)
        # hosts under no public suffix (reserved TLDs such as .example, IP addresses) are their own registrant
        return r.top_domain_under_public_suffix or doc.domain or None

    def process(self, doc: Document):
        signals: dict[str, Any]
        if doc.raw is not None:
            try:
                signals = page_signals(doc.raw.http_headers, doc.raw.html)
            except Exception:  # hostile markup: the signals become "not observable", the document is kept
                count("provenance_unparseable_html")
                signals = not_observable()
                observable = False
            else:
                observable = True
        else:
            signals, observable = not_observable(), False
        invisible = invisible_counts(doc.text)
        prov = {
            "registered_domain": self.registered_domain(doc),
            "pre_llm": is_pre_llm(doc.capture_date),
            "html_observable": observable,
            **signals,
            "c2pa_text_wrapper": has_c2pa_text_wrapper(doc.text),
            "invisible_chars": invisible,
            "invisible_total": sum(invisible.values()),
        }
        yield replace(doc, provenance=prov, raw=None)


class TagProvenance(beam.PTransform):
    """Adds `Document.provenance` (see transforms/provenance/schema.py) and releases the raw HTML."""

    def expand(self, docs):
        return docs | "Tag" >> beam.ParDo(_Tag())
