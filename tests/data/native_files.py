"""Writers of small dataset files in their native container formats, shared by the loader tests."""
import io
import tarfile
from pathlib import Path


def write_tar_gz(path: Path, members: dict) -> Path:
    """A .tar.gz / .tgz holding `members` (name -> bytes) as regular files."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path
