"""A real PACS for the tests: Orthanc on loopback with a temporary configuration, and its REST calls.

Orthanc is Debian's package `orthanc` (`/usr/sbin/Orthanc`). Without it the PACS tests skip, saying
so, except where the environment variable CI is set: there they fail, so CI never passes untested.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ORTHANC_AET = "ORTHANC"
CLIENT_AET = "TFBRATS"


def orthanc_binary() -> str:
    """The Orthanc executable; skips the test (fails it under CI) when it is not installed."""
    found = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
                                             if os.access(p, os.X_OK)), None)
    if found is None:
        message = "Orthanc is not installed (apt-get install orthanc): the PACS tests need a real PACS"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it (.ci/run does)")
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    """A running Orthanc: its DICOM port and REST calls on its HTTP port."""

    def __init__(self, dicom_port: int, http_port: int):
        self.dicom_port = dicom_port
        self.url = f"http://127.0.0.1:{http_port}"

    @property
    def address(self) -> str:
        return f"{ORTHANC_AET}@127.0.0.1:{self.dicom_port}"

    def request(self, path: str, data: bytes | None = None, method: str | None = None):
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if answer.headers.get_content_type() == "application/json" else body

    def upload(self, folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            self.request("/instances", path.read_bytes(), "POST")

    def series(self, study_uid: str, modality: str | None = None) -> list[str]:
        query = {"StudyInstanceUID": study_uid, **({"Modality": modality} if modality else {})}
        return self.request("/tools/find", json.dumps({"Level": "Series", "Query": query}).encode(), "POST")

    def instance_files(self, series_id: str) -> list[bytes]:
        return [self.request(f"/instances/{i['ID']}/file") for i in self.request(f"/series/{series_id}/instances")]


@contextmanager
def running_orthanc(folder: Path, *, allow_store: bool = True) -> Iterator[Orthanc]:
    """Starts Orthanc with its own storage and ports under `folder`; stops it at the end."""
    binary = orthanc_binary()
    dicom_port, http_port = free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "tfbrats-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "DicomAet": ORTHANC_AET, "DicomPort": dicom_port, "HttpPort": http_port, "DicomServerEnabled": True,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
        "DicomAlwaysAllowStore": allow_store, "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True, "DicomCheckCalledAet": False,
        "DicomModalities": {"tfbrats": {"AET": CLIENT_AET, "Host": "127.0.0.1", "Port": free_port(),
                                        "AllowStore": allow_store, "AllowEcho": True, "AllowFind": True,
                                        "AllowGet": True, "AllowMove": True}},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "w")
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    orthanc = Orthanc(dicom_port, http_port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                orthanc.request("/system")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (folder / "orthanc.log").read_text()[-2000:]
                    raise RuntimeError(f"Orthanc did not start: {log_text}") from None
                time.sleep(0.2)
        yield orthanc
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
