"""A study from a PACS and its segmentation back: C-FIND, C-GET and C-STORE with pynetdicom.

`find_series` lists a study's series (C-FIND at series level), `pick_series` chooses T1c, T2, FLAIR
and T1 among them by SeriesDescription (`SERIES_RULES`, overridable per modality by description or
SeriesInstanceUID), `retrieve_series` pulls one series into a folder (C-GET; the PACS sends the
instances back over the same association) and `store_file` sends a file (C-STORE). Every
association is released or aborted; a refused association, a timeout or a failure status is a
`PacsError` that names the PACS, the operation and the status. pynetdicom is the `clinical` extra.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from tfbrats.conventions import REQUIRED_MODALITIES

try:
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (
        EnhancedMRImageStorage,
        MRImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
    )
except ImportError as error:  # pragma: no cover - exercised where the extra is missing
    raise ImportError(f"talking to a PACS needs pynetdicom ({error}); pip install 'tfbrats[clinical]'") from error

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CALLING_AET = "TFBRATS"
# Modality -> SeriesDescription pattern (case-insensitive search), tried in this order: a
# description is claimed by the first modality whose pattern it matches (FLAIR before T1/T2).
SERIES_RULES: dict[str, str] = {
    "flair": r"flair|\bdark[\s_-]?fluid\b",
    "t1ce": r"(t1|mprage|spgr|bravo|vibe|tfe|ffe).*(\+\s?c\b|post|\bgd|gad|contrast|\bce\b|\bkm\b)"
            r"|\bt1[\s_-]?c(e)?\b|(\+\s?c\b|post|\bgd|gad|contrast).*\bt1",
    "t2": r"\bt2(?![\s_-]?\*|[\s_-]?star)(w|\b|_)",
    "t1": r"\bt1(w|\b|_)|mprage|spgr",
}
# Image storage classes a retrieved series may use (single-frame MR is what the reader assembles).
RETRIEVED_CLASSES = (MRImageStorage, EnhancedMRImageStorage)


class PacsError(RuntimeError):
    """A DICOM network operation failed: unreachable, refused, timed out or answered with a failure."""


@dataclasses.dataclass(frozen=True)
class PacsAddress:
    """A DICOM node: its application entity title, host and port.

    Example:
        >>> PacsAddress.parse("ORTHANC@127.0.0.1:4242")
        PacsAddress(aet='ORTHANC', host='127.0.0.1', port=4242)
    """

    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PacsAddress:
        match = re.fullmatch(r"([^@\s\\]{1,16})@([^:\s]+):(\d{1,5})", text.strip())
        if not match or not 0 < int(match.group(3)) < 65536:
            raise ValueError(f"PACS address {text!r} is not AET@HOST:PORT (e.g. ORTHANC@pacs.example.org:4242; an AE "
                             "title has at most 16 characters)")
        return cls(match.group(1), match.group(2), int(match.group(3)))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class SeriesInfo:
    """One series of a study, as C-FIND describes it."""

    uid: str
    description: str
    modality: str
    number: str
    instances: str

    def __str__(self) -> str:
        return (f"#{self.number or '?'} {self.description or '(no description)'!r} [{self.modality or '?'}, "
                f"{self.instances or '?'} instances] {self.uid}")


def _ae(calling_aet: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    return ae


@contextmanager
def _association(ae: AE, pacs: PacsAddress, what: str, **kwargs) -> Iterator:
    """An established association with `pacs`, released (aborted after an error) at the end."""
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.aet, **kwargs)
    if not assoc.is_established:
        reason = ("rejected the association" if assoc.is_rejected else
                  "could not be reached or aborted the association (connection refused or timed out)")
        raise PacsError(f"PACS {pacs} {reason} for {what} (calling AE title {ae.ae_title}); check the address, "
                        "that the PACS is running and that it knows this AE title")
    try:
        yield assoc
    except BaseException:
        assoc.abort()
        raise
    assoc.release()


def _status(status: Dataset, pacs: PacsAddress, what: str) -> int:
    """The status code of a DIMSE answer; a missing one (timeout, abort) is a `PacsError`."""
    if "Status" not in status:
        raise PacsError(f"PACS {pacs} gave no answer to {what}: it aborted the association (refused the request?) "
                        "or did not answer in time")
    return int(status.Status)


def find_series(pacs: PacsAddress, study_uid: str, *, calling_aet: str = DEFAULT_CALLING_AET,
                timeout: float = DEFAULT_TIMEOUT_S) -> list[SeriesInfo]:
    """Every series of a study (C-FIND, study root, series level), in series number order.

    Example:
        >>> find_series(PacsAddress.parse("ORTHANC@127.0.0.1:1"), "1.2.3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.clinical.pacs.PacsError: PACS ORTHANC@127.0.0.1:1 could not be reached ... for C-FIND of study 1.2.3 ...

        Against a PACS holding the study it lists ``SeriesInfo(uid=..., description='AX FLAIR',
        modality='MR', number='3', instances='26')``, one per series.
    """
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    for keyword in ("SeriesInstanceUID", "SeriesDescription", "Modality", "SeriesNumber",
                    "NumberOfSeriesRelatedInstances"):
        setattr(query, keyword, "")
    ae = _ae(calling_aet, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    found = []
    what = f"C-FIND of study {study_uid}"
    with _association(ae, pacs, what) as assoc:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            code = _status(status, pacs, what)
            if code in (0xFF00, 0xFF01) and identifier is not None:
                found.append(SeriesInfo(*(str(identifier.get(k, "") or "") for k in (
                    "SeriesInstanceUID", "SeriesDescription", "Modality", "SeriesNumber",
                    "NumberOfSeriesRelatedInstances"))))
            elif code != 0x0000:
                raise PacsError(f"PACS {pacs} answered {what} with status 0x{code:04X}")
    if not found:
        raise PacsError(f"PACS {pacs} has no series in study {study_uid}; check --study")
    return sorted(found, key=lambda s: (int(s.number) if s.number.isdigit() else 1 << 30, s.uid))


def classify(description: str) -> str | None:
    """The modality a SeriesDescription names by `SERIES_RULES`, or None.

    Example:
        >>> [classify(d) for d in ("AX T1 POST GD", "Ax T2 FLAIR", "T2W_TSE", "sag T1 MPRAGE", "DWI b1000")]
        ['t1ce', 'flair', 't2', 't1', None]
    """
    for modality, pattern in SERIES_RULES.items():
        if re.search(pattern, description or "", flags=re.IGNORECASE):
            return modality
    return None


def _listing(series: Sequence[SeriesInfo]) -> str:
    return "\n".join(f"  {s}" for s in series)


def pick_series(series: Sequence[SeriesInfo], overrides: Mapping[str, str | None] | None = None
                ) -> dict[str, SeriesInfo]:
    """T1c, T2, FLAIR (required) and T1 (when there is one) among a study's image series.

    Args:
        series: the study's series (`find_series`); non-MR series (a SEG, a report) are never picked.
        overrides: modality -> a SeriesInstanceUID, or a SeriesDescription (case-insensitive, exact),
            replacing the rule for that modality.

    Raises:
        ValueError: a modality has no series or several; the message lists the study's series.

    Example:
        >>> study = [SeriesInfo("1", "T1 POST GD", "MR", "1", "50"), SeriesInfo("2", "AX T2", "MR", "2", "20"),
        ...          SeriesInfo("3", "AX FLAIR", "MR", "3", "20")]
        >>> {m: s.uid for m, s in pick_series(study).items()}
        {'flair': '3', 't1ce': '1', 't2': '2'}
    """
    overrides = {m: v for m, v in (overrides or {}).items() if v}
    images = [s for s in series if s.modality in ("MR", "")]
    picked: dict[str, SeriesInfo] = {}
    problems = []
    for modality in SERIES_RULES:
        if modality in overrides:
            wanted = overrides[modality]
            matches = [s for s in images if s.uid == wanted] or [
                s for s in images if s.description.strip().lower() == wanted.strip().lower()]
            rule = f"the override {wanted!r}"
        else:
            matches = [s for s in images if classify(s.description) == modality]
            rule = f"the rule /{SERIES_RULES[modality]}/"
        if len(matches) == 1:
            picked[modality] = matches[0]
        elif len(matches) > 1:
            problems.append(f"{modality}: {len(matches)} series match {rule} "
                            f"({', '.join(repr(s.description) for s in matches)})")
        elif modality in REQUIRED_MODALITIES or modality in overrides:
            problems.append(f"{modality}: no series matches {rule}")
    if problems:
        raise ValueError("cannot choose the study's series: " + "; ".join(problems) + ". Choose with "
                         "--t1c/--t2/--flair/--t1 (a SeriesInstanceUID or a "
                         f"SeriesDescription). The study's series:\n{_listing(series)}")
    return picked


def retrieve_series(pacs: PacsAddress, study_uid: str, series_uid: str, folder: str | Path, *,
                    calling_aet: str = DEFAULT_CALLING_AET, timeout: float = DEFAULT_TIMEOUT_S) -> list[Path]:
    """Pulls one series into `folder` (C-GET), one file per instance; returns the files.

    Example:
        >>> pacs = PacsAddress.parse("ORTHANC@127.0.0.1:1")  # nothing listens on port 1
        >>> retrieve_series(pacs, "1.2.3", "1.2.3.1", "pulled/t1ce")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.clinical.pacs.PacsError: PACS ORTHANC@127.0.0.1:1 could not be reached ... C-GET of series 1.2.3.1 ...
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def on_store(event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        path = folder / f"{len(written):05d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        written.append(path)
        return 0x0000

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    ae = _ae(calling_aet, timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in RETRIEVED_CLASSES:
        ae.add_requested_context(sop_class)
    roles = [build_role(sop_class, scp_role=True) for sop_class in RETRIEVED_CLASSES]
    what = f"C-GET of series {series_uid}"
    with _association(ae, pacs, what, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
        code = 0x0000
        for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            code = _status(status, pacs, what)
            if code not in (0x0000, 0xFF00, 0xFF01):
                break
    if code != 0x0000 or not written:
        raise PacsError(f"PACS {pacs} answered {what} with status 0x{code:04X} after {len(written)} instances; "
                        "nothing of it is used")
    return written


def store_file(pacs: PacsAddress, path: str | Path, *, calling_aet: str = DEFAULT_CALLING_AET,
               timeout: float = DEFAULT_TIMEOUT_S) -> int:
    """Sends one DICOM file to the PACS (C-STORE); returns the success (0x0000) or warning status.

    Raises:
        PacsError: the PACS refused the association or the SOP class, did not answer, or answered
            with a failure status.

    Example:
        >>> from pydicom import examples
        >>> store_file(PacsAddress.parse("ORTHANC@127.0.0.1:1"), examples.get_path("mr"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.clinical.pacs.PacsError: PACS ORTHANC@127.0.0.1:1 could not be reached ...
    """
    dataset = pydicom.dcmread(path)
    ae = _ae(calling_aet, timeout)
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    what = f"C-STORE of {Path(path).name}"
    with _association(ae, pacs, what) as assoc:
        if not any(c.abstract_syntax == dataset.SOPClassUID for c in assoc.accepted_contexts):
            raise PacsError(f"PACS {pacs} does not accept {dataset.SOPClassUID.name} instances ({what})")
        code = _status(assoc.send_c_store(dataset), pacs, what)
    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:
        raise PacsError(f"PACS {pacs} refused {what} with status 0x{code:04X}")
    return code


@dataclasses.dataclass
class PulledStudy:
    """The series `pull_study` chose (modality -> series) and the folder each was retrieved into."""

    series: dict[str, SeriesInfo]
    folders: dict[str, Path]


def pull_study(pacs: PacsAddress, study_uid: str, folder: str | Path, *,
               overrides: Mapping[str, str | None] | None = None, calling_aet: str = DEFAULT_CALLING_AET,
               timeout: float = DEFAULT_TIMEOUT_S) -> PulledStudy:
    """Lists a study's series, chooses T1c, T2, FLAIR (and T1) and retrieves each into `folder/<modality>`.

    Args:
        pacs: the PACS.
        study_uid: the StudyInstanceUID.
        folder: where the series go (one sub-folder per modality).
        overrides: modality ("t1ce", "t2", "flair", "t1") -> SeriesInstanceUID or SeriesDescription.
        calling_aet: this program's AE title.
        timeout: seconds to wait at each step.

    Example:
        Against a PACS holding the study, ``sorted(pull_study(...).folders)`` is
        ``['flair', 't1ce', 't2']``; the first query that fails stops it:

        >>> pull_study(PacsAddress.parse("ORTHANC@127.0.0.1:1"), "1.2.3", "pulled")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tfbrats.clinical.pacs.PacsError: PACS ORTHANC@127.0.0.1:1 could not be reached ... for C-FIND of study 1.2.3 ...
    """
    series = find_series(pacs, study_uid, calling_aet=calling_aet, timeout=timeout)
    chosen = pick_series(series, overrides)
    folders = {}
    for modality, info in chosen.items():
        folders[modality] = Path(folder) / modality
        retrieve_series(pacs, study_uid, info.uid, folders[modality], calling_aet=calling_aet, timeout=timeout)
    return PulledStudy(chosen, folders)
