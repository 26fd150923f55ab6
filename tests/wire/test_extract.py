"""safe_extract refuses hostile zips with a clear error and unpacks honest ones."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from qianfan_export_wait.errors import UnsafeArchiveError
from qianfan_export_wait.extract import ExtractLimits, check_member_name, safe_extract


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 GB of zeros in a file of about 4 MB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    block = bytes(4 * 1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("results.csv", "w", force_zip64=True) as member:
            for _ in range(1_000_000_000 // len(block)):
                member.write(block)
    return path


def test_honest_zip_unpacks_beside_it_named_after_it(tmp_path: Path) -> None:
    source = _zip(tmp_path / "result.zip", {"a.csv": b"x,y\n", "dir/b.csv": b"1,2\n"})
    target = safe_extract(source)
    assert target == tmp_path / "result"
    assert (target / "dir" / "b.csv").read_bytes() == b"1,2\n"


def test_member_climbing_out_with_dotdot_is_refused(tmp_path: Path) -> None:
    source = _zip(tmp_path / "evil.zip", {"../x": b"owned"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        safe_extract(source)
    assert not (tmp_path / "x").exists()


def test_member_with_an_absolute_path_is_refused(tmp_path: Path) -> None:
    source = _zip(tmp_path / "evil.zip", {"/etc/x": b"owned"})
    with pytest.raises(UnsafeArchiveError, match="absolute path"):
        safe_extract(source)


def test_member_with_a_windows_drive_or_backslashes_is_refused() -> None:
    with pytest.raises(UnsafeArchiveError):
        check_member_name("C:\\Windows\\x")
    with pytest.raises(UnsafeArchiveError):
        check_member_name("..\\..\\x")


def test_symbolic_link_member_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "link.zip"
    with zipfile.ZipFile(source, "w") as archive:
        info = zipfile.ZipInfo("innocent")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(source)


def test_gigabyte_bomb_in_a_small_file_is_refused_before_writing(
    bomb: Path, tmp_path: Path
) -> None:
    assert bomb.stat().st_size < 8 * 1024 * 1024
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        safe_extract(bomb, target)
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_total_size_over_the_limit_is_refused(tmp_path: Path) -> None:
    source = _zip(tmp_path / "big.zip", {"a": b"1" * 600, "b": b"2" * 600})
    with pytest.raises(UnsafeArchiveError, match="limit of 1000"):
        safe_extract(source, limits=ExtractLimits(max_bytes=1000))


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    source = _zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(11)})
    with pytest.raises(UnsafeArchiveError, match="11 members"):
        safe_extract(source, limits=ExtractLimits(max_files=10))


def test_member_that_inflates_past_its_declared_size_leaves_nothing(tmp_path: Path) -> None:
    source = _zip(tmp_path / "liar.zip", {"a.csv": b"z" * 5000})
    data = bytearray(source.read_bytes())
    # Shrink the declared size (local header and central directory) to 100 bytes.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        data[at : at + 4] = (100).to_bytes(4, "little")
    source.write_bytes(bytes(data))
    with pytest.raises((UnsafeArchiveError, zipfile.BadZipFile)):
        safe_extract(source, tmp_path / "out")
    assert _leftovers(tmp_path) == ["liar.zip"]


def test_existing_target_is_not_unpacked_over(tmp_path: Path) -> None:
    source = _zip(tmp_path / "r.zip", {"a": b"1"})
    (tmp_path / "r").mkdir()
    with pytest.raises(UnsafeArchiveError, match="already exists"):
        safe_extract(source)


def test_file_that_is_not_a_zip_is_refused_clearly(tmp_path: Path) -> None:
    source = tmp_path / "r.zip"
    source.write_bytes(b"not a zip")
    with pytest.raises(UnsafeArchiveError, match="not a readable zip"):
        safe_extract(source)


def test_member_whose_bytes_fail_their_crc_is_an_unsafe_archive_error(tmp_path: Path) -> None:
    """Before the fix a bad CRC came out as a bare ``zipfile.BadZipFile``."""
    source = tmp_path / "crc.zip"
    with zipfile.ZipFile(source, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.csv", b"a,b\n" * 100)
    packed = bytearray(source.read_bytes())
    packed[packed.index(b"a,b\n") + 1] ^= 0xFF
    source.write_bytes(bytes(packed))
    with pytest.raises(UnsafeArchiveError, match=r"a\.csv") as caught:
        safe_extract(source)
    assert isinstance(caught.value.__cause__, zipfile.BadZipFile)
    assert _leftovers(tmp_path) == ["crc.zip"]


def test_file_and_folder_of_the_same_name_is_an_unsafe_archive_error(tmp_path: Path) -> None:
    """Before the fix a member ``a`` then ``a/b`` raised a bare ``NotADirectoryError``."""
    source = _zip(tmp_path / "clash.zip", {"a": b"file", "a/b": b"below a file"})
    with pytest.raises(UnsafeArchiveError, match="a/b") as caught:
        safe_extract(source)
    assert isinstance(caught.value.__cause__, OSError)
    assert _leftovers(tmp_path) == ["clash.zip"]
