"""Lineage strings in the forms other pipelines write them, read and written in one place.

* ranked, QIIME 2 / UNITE / Greengenes style: ``k__Animalia; o__Diptera; f__Culicidae;
  g__Aedes; s__Aedes_albopictus`` (``;`` with or without spaces; ``d__`` domain; an empty
  ``s__`` is a missing rank; an epithet-only species, Greengenes' ``s__albopictus``, is joined
  to its genus (:func:`named`, as in SINTAX headers and taxonomy tables); a prefix other than
  these letters, ``sk__`` or ``t__``, is dropped and warned about once per file: :class:`UnknownRanks`);
* unranked, RDP / CO1 Classifier style: ``Root;Animalia;Arthropoda;Insecta;Diptera;Culicidae;
  Aedes;Aedes_albopictus``: the last four levels are read as order, family, genus, species
  (those training sets end at species), so they need at least four levels and a last one of
  two words or more: a lineage that ends at genus would be read one rank off;
* levelled, SILVA 132 and older for QIIME: ``D_0__Animalia;D_1__Arthropoda;...;D_6__Aedes_albopictus``:
  ``D_n__`` numbers a level, not a rank (SILVA's eukaryotes have more levels than ranks), so the
  prefixes are dropped and the levels read as an unranked lineage, by position from the end.

MIDORI2 writes each name with its NCBI taxid (``Aedes_7158``, ``Aedes albopictus_7160``) and fills a
rank NCBI lacks with the rank's name and the taxon below (``order_Vannellidae_95227``), in its
raw (``>ID###root_1;Eukaryota_2759;...``), RDP and SINTAX releases: the taxids are dropped
(:func:`without_taxids`) and a filled rank is a missing one (:func:`named`).

SINTAX headers annotate a FASTA record with its ranks: ``>ID;tax=o:Diptera,...,s:Aedes_albopictus;``
(:func:`parse_sintax_header`); :func:`sintax_lineage` writes that form.

Names that name nothing (:func:`named`) are missing ranks in every form, SINTAX annotations,
taxonomy tables and BOLD TSV included; so are provisional identifications, open nomenclature's
``Aedes cf. albopictus``, ``aff.``, ``nr.``, ``Aedes albopictus?`` (:class:`Provisional` counts them
per file for one warning).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence

from models.config import RANKS, is_missing_label
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")
SINTAX_RANKS = {"d": "domain", "k": "kingdom", "p": "phylum", "c": "class", "o": "order",
                "f": "family", "g": "genus", "s": "species"}
RANKS_ABOVE_ORDER = tuple(rank for rank in SINTAX_RANKS.values() if rank not in RANKS)  # kept per order
_TAX = re.compile(r"(?:^|[;\s])tax=([^;]*)((?:;[dkpcofgsDKPCOFGS]:[^;=]*)*)")  # a SINTAX annotation in a
# FASTA header; the second group: ranks written after it with ';' for ',' (tax=o:Diptera;f:Culicidae;), never
# an annotation (';size=3')
_CONFIDENCE = re.compile(r"\(\s*[01](?:\.\d*)?\s*\)$")  # Diptera(1.00): a SINTAX lineage's confidence
_PREFIX = re.compile(r"^([a-zA-Z]{1,3})__(.*)$")  # o__Diptera; also sk__ (superkingdom), t__ (strain)
_LEVEL = re.compile(r"^D_\d+__")  # SILVA 132 for QIIME: D_3__Diptera, a level's number, not a rank
RANK_LETTER = {rank: letter for letter, rank in SINTAX_RANKS.items()}
_NO_EPITHET = frozenset({"sp", "spp"})  # "Aedes sp.": a species left unnamed
# open nomenclature's qualifiers of a provisional identification, a word of their own (Aedes cf. albopictus,
# Aedes_aff_albopictus, Aedes cf.albopictus; never the start of an epithet: affinis), or a '?' anywhere
_PROVISIONAL = re.compile(r"(?:^|[\s_(\[])(?:cfr?|aff|nr|near)(?:\.|(?=[\s_]|$))|\?", re.IGNORECASE)
_TAXID = re.compile(r"[_ ]\d+$")  # MIDORI2: Aedes_albopictus_7160
_FILLED = re.compile(r"^(?:domain|superkingdom|kingdom|phylum|class|order|family|genus) ", re.IGNORECASE)
Names = Callable[[Mapping[str, str]], dict[str, str]]  # ranks as written -> the ranks that name something


def qiime_taxon(labels: Mapping[str, str | None]) -> str:
    """``o__Diptera; f__Culicidae; g__Aedes; s__Aedes_albopictus`` down to the deepest labelled
    rank (spaces in names become underscores, as in the UNITE and SILVA releases for QIIME 2); a
    rank above it without a label is an empty ``f__``, as in SILVA and Greengenes, so that each
    level keeps its position (``qiime taxa collapse --p-level`` counts levels)."""
    ranks = list(labels)
    depth = max((i + 1 for i, rank in enumerate(ranks) if labels[rank]), default=0)
    return "; ".join(f"{RANK_LETTER.get(rank, rank)}__{(labels[rank] or '').replace(' ', '_')}"
                     for rank in ranks[:depth])


def ranks_named_above(above: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The ranks above order that some order's lineage in ``above`` (an index manifest's
    ``above_order``: order -> {rank: name}) names, coarse to fine."""
    named = {rank for lineage in above.values() for rank in lineage}
    return [rank for rank in RANKS_ABOVE_ORDER if rank in named]


def sintax_lineage(labels: Mapping[str, str | None], confidence: Mapping[str, float] | None = None) -> str:
    """``o:Diptera,f:Culicidae,s:Aedes_albopictus`` over the labelled ranks (spaces in names become
    underscores), each with its ``confidence`` when given: ``o:Diptera(1.00),...``; SINTAX's
    lineages, as ``vsearch --sintax --tabbedout`` writes them and its ``tax=`` annotations hold."""
    return ",".join(f"{RANK_LETTER.get(rank, rank)}:{name.replace(' ', '_')}"
                    + ("" if confidence is None else f"({confidence[rank]:.2f})")
                    for rank, name in labels.items() if name)


def parse_sintax_header(text: str) -> tuple[dict[str, str], list[str]]:
    """The ranks of a SINTAX ``tax=`` annotation, e.g. ``;tax=o:Diptera,s:Aedes_albopictus;``,
    and the rank prefixes in it that are none of :data:`SINTAX_RANKS`, as written (``x:`` of
    ``x:Foo``, ``t:`` of vsearch's strains), whose names are dropped.

    Returns ``({"order": "Diptera", "species": "Aedes albopictus"}, [])`` (underscores read as
    spaces; d/k/p/c kept as domain/kingdom/phylum/class; a confidence, ``o:Diptera(1.00)`` as
    vsearch --sintax and clibd classify write lineages, dropped; ranks written with ``;`` between
    them, ``tax=o:Diptera;f:Culicidae;``, read as with ``,``); ``({}, [])`` when there is no ``tax=``.
    Raises ValueError on an entry without ``rank:`` prefix.
    """
    match = _TAX.search(text)
    if match is None:
        return {}, []
    ranks, unknown = {}, []
    for entry in match.group(1).split(",") + match.group(2).split(";"):
        entry = entry.strip()
        if not entry:
            continue
        letter, sep, value = entry.partition(":")
        letter = letter.strip()
        if not sep or not letter:
            raise ValueError(f"taxonomy entry {entry!r} is not of the form rank:name (e.g. g:Aedes)")
        value = _CONFIDENCE.sub("", value.replace("_", " ").strip()).strip()
        if letter.lower() not in SINTAX_RANKS:
            unknown.append(f"{letter}:")
        elif value:
            ranks[SINTAX_RANKS[letter.lower()]] = value
    return ranks, unknown


def named(ranks: Mapping[str, str]) -> dict[str, str]:
    """``ranks`` without the names that name nothing: placeholders (``unidentified``,
    ``not_classified``, ``NA``, ...: ``models.config.MISSING_LABELS``), MIDORI2's filled ranks (their
    taxids dropped: :func:`without_taxids`), provisional identifications (:func:`is_provisional`:
    ``Aedes cf. albopictus`` counts for its genus and above, as ``Aedes sp.`` does; BOLD's interim
    names, ``Aedes sp. 3``, ``Megaselia sp. BOLD:ACZ1234``, are species) and a species not identified
    (UNITE's ``Aedes_sp``, ``Aedes sp.``, ``Aedes spp``, ``Aedes``: the genus alone); an epithet-only
    species (``albopictus`` or ``pipiens s.l.`` below genus ``Aedes``, ``Culex``: a lower-case first
    word that is not the genus) is joined to its genus."""
    ranks = dict(zip(ranks, without_taxids(list(ranks.values()))))
    kept = {rank: name for rank, name in ranks.items() if not is_missing_label(name)
            and not _FILLED.match(name.replace("_", " ")) and not is_provisional(name)}
    species, genus = kept.get("species"), kept.get("genus")
    if species and (species == genus or species.split()[-1].lower().rstrip(".") in _NO_EPITHET):
        del kept["species"]
    elif species and genus and species[:1].islower() and species.split()[0].lower() != genus.lower():
        kept["species"] = f"{genus} {species}"  # Greengenes' s__albopictus, SINTAX's s:pipiens_s.l.
    return kept


def is_provisional(name: str) -> bool:
    """Whether ``name`` is a provisional identification in open nomenclature: ``cf.`` (``cf``,
    ``cfr.``), ``aff.``, ``nr.`` (``near``) as a word of their own (``Aedes cf. albopictus``,
    ``Aedes_aff_albopictus``), or a ``?`` (``Aedes albopictus?``)."""
    return bool(_PROVISIONAL.search(name))


def is_ranked_lineage(text: str) -> bool:
    """Whether ``text`` looks like a ``x__Name;y__Name`` lineage."""
    return bool(_PREFIX.match(text.split(";", 1)[0].strip()))


def parse_lineage(text: str, names: Names = named) -> tuple[dict[str, str], list[str]]:
    """Rank -> name from a ranked (``o__Diptera;...``) or unranked (``Root;...;Diptera;...``)
    lineage, underscores read as spaces, the names that name nothing dropped by ``names``
    (:func:`named`; :meth:`Provisional.named` to count provisional ones), and the prefixes in it
    that are none of d, k, p, c, o, f, g, s, as written (``sk__``, ``t__``: :class:`UnknownRanks`),
    whose names are dropped.
    Raises ValueError when neither form fits."""
    levels = without_taxids([level.strip() for level in text.strip().strip(";").split(";")])
    if is_missing_label(text) or text.strip().lower() == "unassigned":  # QIIME 2: Unassigned
        return {}, []
    levelled = bool(_LEVEL.match(levels[0]))
    if levelled:
        levels = _without_level_numbers(levels)
    if is_ranked_lineage(text):
        ranks, unknown = {}, []
        for level in levels:
            match = _PREFIX.match(level)
            if match is None:
                raise ValueError(f"lineage level {level!r} lacks a rank prefix such as o__ or g__")
            letter, name = match.group(1).lower(), match.group(2).replace("_", " ").strip()
            if letter in SINTAX_RANKS:
                ranks[SINTAX_RANKS[letter]] = name
            elif f"{match.group(1)}__" not in unknown:
                unknown.append(f"{match.group(1)}__")
        return names(ranks), unknown
    if len(levels) < len(RANKS) or not all(levels[-len(RANKS):]):
        raise ValueError(f"an unranked lineage needs at least {len(RANKS)} levels ending with "
                         f"{', '.join(RANKS)}; found {text.strip()[:60]!r}")
    if len(levels[-1].replace("_", " ").split()) < 2:
        raise ValueError(f"an unranked lineage{' (D_<n>__ numbers levels, not ranks)' * levelled} is read "
                         f"by position (its last {len(RANKS)} levels as "
                         f"{', '.join(RANKS)}) and must end with a species of two words (Genus_epithet); "
                         f"this one ends with {levels[-1]!r}: give ranked levels (o__Diptera;...;g__Aedes) "
                         "or a --taxonomy table with rank columns")
    return names(dict(zip(RANKS, (level.replace("_", " ").strip() for level in levels[-len(RANKS):])))), []


def _without_level_numbers(levels: list[str]) -> list[str]:
    """SILVA's ``D_0__Animalia;...;D_6__Aedes_albopictus`` levels without their prefixes, the empty
    levels at the end dropped. Raises ValueError on a level without the prefix."""
    stray = next((level for level in levels if not _LEVEL.match(level)), None)
    if stray is not None:
        raise ValueError(f"lineage level {stray!r} lacks the D_<n>__ prefix of the levels before it")
    levels = [_LEVEL.sub("", level) for level in levels]
    while levels and not levels[-1].strip():
        levels.pop()
    return levels


def check_record(where: str, key_name: str, key: str, names: Mapping[str, str | None]) -> None:
    """Refuse, as read, a record that an index's ``records.tsv`` (``clibd_cli/reference/records.py``)
    cannot hold: an empty ``key``, or a ``key`` or one of its ``names`` (rank -> name) with a tab or
    newline. ``where`` (``FILE:LINE``) and ``key_name`` (``processid``, ``id``) name it in the ClibdError."""
    if not key.strip():
        raise ClibdError(f"{where}: empty {key_name}")
    for what, text in ((key_name, key), *names.items()):
        if text and any(c in text for c in "\t\r\n"):
            raise ClibdError(f"{where}: {what} {text!r} contains a tab or newline, which the records.tsv of "
                             "an index cannot hold")


def without_taxids(names: list[str]) -> list[str]:
    """MIDORI2's names without their taxids (``Aedes_7158`` -> ``Aedes``) when every one of two or
    more names ends with a number (a name from another source never does); else ``names``."""
    if len(names) < 2 or not all(_TAXID.search(name) for name in names):
        return names
    return [_TAXID.sub("", name) for name in names]


def header_lineage(record_id: str, description: str, names: Names = named
                   ) -> tuple[str, dict[str, str], list[str]] | None:
    """The record id, ranks (those ``names`` keeps: :func:`parse_lineage`) and unknown rank prefixes
    a FASTA header carries as a lineage, or None if it carries none.

    UNITE: ``>Aedes_albopictus|MT153946|SH1227328.09FU|reps|k__Animalia;...;s__Aedes_albopictus``
    (the id is what precedes the lineage); MIDORI2 raw: ``>MG559732.1.<1.>690###root_1;...;
    Aedes_albopictus_7160`` (the id precedes ``###``); QIIME 2 / RDP: ``>ID k__Animalia; ...; s__...`` or
    ``>ID Root;...;Diptera;Culicidae;Aedes;Aedes_albopictus``. A description that is not a
    lineage (no ``;``, ``key=value`` annotations, fewer than four unranked levels) is none.
    Raises ValueError on a ranked lineage with an unranked level.
    """
    if "###" in record_id:
        head, _, first = record_id.partition("###")
        return head, *parse_lineage(";".join(filter(None, (first, description))), names)
    if "|" in record_id:
        head, _, first = record_id.rpartition("|")
        if is_ranked_lineage(first):
            return head, *parse_lineage(";".join(filter(None, (first, description))), names)
    text = description.strip()
    if ";" not in text or "=" in text:
        return None
    if is_ranked_lineage(text):
        return record_id, *parse_lineage(text, names)
    levels = [level for level in text.strip(";").split(";") if level.strip()]
    return (record_id, *parse_lineage(text, names)) if len(levels) >= len(RANKS) else None


class UnknownRanks:
    """The rank prefixes of one file's taxonomy that are none of d, k, p, c, o, f, g, s (SINTAX's
    ``x:Foo`` and vsearch's strain ``t:``, a lineage's ``sk__`` or ``t__``): their names are dropped,
    and :meth:`warn` says so once for the file, at the first line that has one."""

    def __init__(self) -> None:
        self.records, self.line = 0, 0  # records with an unknown prefix; the first's line
        self.prefixes: dict[str, None] = {}  # in the order met

    def add(self, line: int, prefixes: Sequence[str]) -> None:
        """Note the record on ``line`` and its unknown ``prefixes`` (as written), if it has any."""
        if prefixes:
            self.records, self.line = self.records + 1, self.line or line
            self.prefixes.update(dict.fromkeys(prefixes))

    def warn(self, name: str) -> None:
        """One warning for the file ``name`` if any record had an unknown prefix."""
        if self.records:
            log.warning("%s:%d: unknown rank prefix%s %s (in %s of this file): their names are dropped; "
                        "the ranks clibd reads are %s (domain to species)", name, self.line,
                        "es" * (len(self.prefixes) > 1), ", ".join(map(repr, self.prefixes)),
                        counted(self.records, "record"), ", ".join(SINTAX_RANKS))


class Provisional:
    """The records of one file with a provisional name (:func:`is_provisional`, ``Aedes cf.
    albopictus``) that :meth:`named` dropped, for :meth:`warn`'s one warning for the file."""

    def __init__(self) -> None:
        self.records, self.line = 0, 0  # records counted; the last one's line
        self.first: tuple[int, str] = (0, "")  # the first one's line and name

    def named(self, line: int, ranks: Mapping[str, str]) -> dict[str, str]:
        """:func:`named` ``ranks``, the record on ``line`` counted (once) if one of them is provisional."""
        written = next((name for name in ranks.values() if name and is_provisional(name)), None)
        if written and line != self.line:
            self.records, self.line = self.records + 1, line
            self.first = self.first if self.first[0] else (line, written)
        return named(ranks)

    def uncount(self, line: int) -> None:
        """Take back the record on ``line``: its names were not used (a taxonomy table gives its ranks)."""
        if line == self.line and self.records:
            self.records, self.line = self.records - 1, 0
            self.first = (0, "") if self.first[0] == line else self.first

    def warn(self, name: str) -> None:
        """One warning for the file ``name`` if any record had a provisional name."""
        if self.records:
            log.warning("%s:%d: %s with a provisional identification (cf., aff., nr. or ?; the first is %r): "
                        "that rank left unnamed, as for 'Aedes sp.', the record counted for the ranks above it",
                        name, self.first[0], counted(self.records, "record"), self.first[1])
