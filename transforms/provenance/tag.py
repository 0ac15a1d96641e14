"""`TagProvenance`: registered domain, pre-LLM era and text-level signals, added to the reader's page signals."""
from __future__ import annotations

import apache_beam as beam
import tldextract

from transforms.dates import is_pre_llm
from transforms.document import Document, Provenance, replace, replace_provenance
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
        # Page signals come from the reader (WARC responses) or the record itself; anything else is not observable.
        page = doc.provenance if doc.provenance is not None else Provenance(html_observable=False)
        invisible = invisible_counts(doc.text)
        yield replace(doc, provenance=replace_provenance(
            page,
            registered_domain=self.registered_domain(doc),
            pre_llm=is_pre_llm(doc.capture_date),
            html_observable=bool(page.html_observable),
            c2pa_text_wrapper=has_c2pa_text_wrapper(doc.text),
            invisible_chars=invisible,
            invisible_total=sum(invisible.values()),
        ))


@beam.typehints.with_input_types(Document)
@beam.typehints.with_output_types(Document)
class TagProvenance(beam.PTransform):
    """Completes `Document.provenance` (transforms/document.py): registered domain, pre-LLM era, invisible
    characters and the C2PA text wrapper. The page's declared signals were taken by the reader from its one HTML
    parse, so this stage holds no HTML and may run before or after dedup at the same cost."""

    def expand(self, docs):
        return docs | "Tag" >> beam.ParDo(_Tag()).with_output_types(Document)
