"""The RDP naive Bayesian classifier (Wang et al. 2007) trained on the keys: a baseline with a
confidence (bootstrap support) at every rank.

Debian's ``rdp-classifier`` 2.10 (``/usr/share/rdp-classifier/rdp_classifier.jar``) is run with
``java`` directly, with room for a BOLD-sized training set (its ``rdp_classifier`` wrapper caps
the heap at 512 MB). Training (``ClassifierTraineeMaker``) reads ``train.fasta`` with headers
``>ID<TAB>Root;order;family;genus;species`` (records lacking a rank are left out: RDP needs the
whole lineage) and ``taxid.txt``, one line per taxon ``id*name*parent id*depth*rank`` (root
``0*Root*-1*0*rootrank``); the trained folder gets the ``rRNAClassifier.properties`` naming its
four files. Classification (``multicompare.Main -f allrank``) writes per query its id, strand,
then ``name, rank, confidence`` per rank. Used by ``clibd evaluate --baselines rdp``
(``baselines.py``) and ``benchmarks/batch_calibration.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from models.config import RANKS

JAR = Path("/usr/share/rdp-classifier/rdp_classifier.jar")
JAVA = ("java", "-Xmx6g", "-cp", str(JAR))
PROPERTIES = ("bergeyTree=bergeyTrainingTree.xml\nprobabilityList=genus_wordConditionalProbList.txt\n"
              "probabilityIndex=wordConditionalProbIndexArr.txt\nwordPrior=logWordPrior.txt\n"
              "classifierVersion=RDP Naive Bayesian rRNA Classifier Version 2.10\n")


def missing() -> list[str]:
    """What RDP needs that this machine lacks."""
    return [what for what, found in (("java", shutil.which("java")), (str(JAR), JAR.is_file())) if not found]


def write_training_set(folder: Path, ids: Sequence[str], barcodes: Sequence[str],
                       lineages: Sequence[Sequence[str | None]]) -> int:
    """``train.fasta`` and ``taxid.txt`` in ``folder`` from records with every rank of ``RANKS``;
    returns how many records were written."""
    taxa, lines, written = {("Root",): 0}, ["0*Root*-1*0*rootrank"], 0
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.fasta", "w", encoding="ascii", errors="replace") as f:
        for record, barcode, lineage in zip(ids, barcodes, lineages):
            names = [taxon_name(n) for n in lineage]
            if not all(names):
                continue
            path = ("Root",)
            for depth, (rank, name) in enumerate(zip(RANKS, names), start=1):
                if path + (name,) not in taxa:
                    taxa[path + (name,)] = len(taxa)
                    lines.append(f"{taxa[path + (name,)]}*{name}*{taxa[path]}*{depth}*{rank}")
                path += (name,)
            f.write(f">{record}\tRoot;{';'.join(names)}\n{barcode}\n")
            written += 1
    (folder / "taxid.txt").write_text("\n".join(lines) + "\n")
    return written


def train_command(folder: Path) -> list[str]:
    """Trains into ``folder/model`` from :func:`write_training_set`'s files (then :func:`finish`)."""
    return [*JAVA, "edu.msu.cme.rdp.classifier.train.ClassifierTraineeMaker", "-o", str(folder / "model"),
            "-s", str(folder / "train.fasta"), "-t", str(folder / "taxid.txt")]


def finish(folder: Path) -> Path:
    """Writes the trained model's properties file and returns it."""
    properties = folder / "model" / "rRNAClassifier.properties"
    properties.write_text(PROPERTIES)
    return properties


def classify_command(properties: Path, queries: Path, out: Path) -> list[str]:
    """The RDP classifier's command line: ``queries`` classified by the trained ``properties``,
    every rank's assignment written to ``out`` (read by :func:`read_allrank`)."""
    return [*JAVA, "edu.msu.cme.rdp.multicompare.Main", "-t", str(properties), "-f", "allrank",
            "-o", str(out), str(queries)]


def read_allrank(path: Path) -> dict[str, dict[str, tuple[str, float]]]:
    """Per query id, per rank: the label and its bootstrap confidence."""
    scores = {}
    with open(path) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            triples = zip(fields[2::3], fields[3::3], fields[4::3])
            scores[fields[0]] = {rank: (name, float(conf)) for name, rank, conf in triples if rank in RANKS}
    return scores


def taxon_name(label: str | None) -> str:
    """A taxon name RDP's files can hold (no field separators; ASCII: :func:`ascii_name`)."""
    return ascii_name((label or "").replace("*", "_").replace(";", "_").replace("\t", " "))


def ascii_name(name: str) -> str:
    """``name`` in the ASCII the tools' files are written in, each other letter as ``%EB``
    (``Aëdes`` -> ``A%EBdes``): written as ``?``, it named another taxon in the FASTA than in
    RDP's taxonomy file, and two names that differ in it one taxon."""
    return "".join(c if c.isascii() else f"%{ord(c):X}" for c in name)
