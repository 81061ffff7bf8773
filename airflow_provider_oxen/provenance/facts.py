"""What a stored image or clip says about where it came from: the facts every marking writes."""

from __future__ import annotations

from dataclasses import dataclass

# IPTC's controlled vocabulary, as platforms and the C2PA specification read it.
DIGITAL_SOURCE_TYPE_BASE = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED = DIGITAL_SOURCE_TYPE_BASE + "trainedAlgorithmicMedia"
COMPOSITE = DIGITAL_SOURCE_TYPE_BASE + "compositeWithTrainedAlgorithmicMedia"


@dataclass(frozen=True)
class Ingredient:
    """A source asset an edit or a clip was made from (an input image)."""

    uri: str
    mime_type: str
    # Empty until loaded: the XMP names an input by its URI only; a C2PA manifest hashes its bytes.
    data: bytes = b""


@dataclass(frozen=True)
class Provenance:
    """The facts about one generated asset; ``ingredients`` are its inputs, if any."""

    generation_id: str
    model: str
    software_agent: str
    ingredients: tuple[Ingredient, ...] = ()

    @property
    def digital_source_type(self) -> str:
        # An edit or an image-to-video clip is made from a supplied asset: a composite.
        return COMPOSITE if self.ingredients else GENERATED
