"""TSIG keys from tsig-keygen's files: the clause as the tool prints it (and as people
edit it), several keys, the secret from a file of its own; errors that name the file
and the problem in one line, and never show the secret; keys that sign."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import dns.message
import dns.name
import dns.tsig
import pytest
from nicupdate_server.dns.tsig import KeyFileError, load_key, load_key_file

SECRET = base64.b64encode(b"a transfer secret of 32 bytes!!!").decode()
SECRET_BYTES = base64.b64decode(SECRET)
KEYGEN_OUTPUT = f"""key "xfr-key" {{
\talgorithm hmac-sha256;
\tsecret "{SECRET}";
}};
"""


def write(tmp_path: Path, text: str, name: str = "xfr.key") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def signs_and_verifies(key: dns.tsig.Key) -> bool:
    query = dns.message.make_query("dyn.example.test", "AXFR")
    query.use_tsig(key)
    parsed = dns.message.from_wire(query.to_wire(), keyring={key.name: key})
    return parsed.had_tsig


def test_tsig_keygen_output(tmp_path: Path) -> None:
    key = load_key_file(write(tmp_path, KEYGEN_OUTPUT))
    assert key.name == dns.name.from_text("xfr-key.")
    assert key.algorithm == dns.tsig.HMAC_SHA256
    assert key.secret == SECRET_BYTES
    assert signs_and_verifies(key)


def test_a_file_the_real_tsig_keygen_wrote(tmp_path: Path) -> None:
    made = subprocess.run(
        ["tsig-keygen", "-a", "hmac-sha512", "made-key"], capture_output=True, text=True, check=True
    )
    key = load_key_file(write(tmp_path, made.stdout))
    assert key.name == dns.name.from_text("made-key.")
    assert key.algorithm == dns.tsig.HMAC_SHA512
    assert base64.b64encode(key.secret).decode() in made.stdout
    assert signs_and_verifies(key)


def test_comments_whitespace_and_several_keys(tmp_path: Path) -> None:
    other = base64.b64encode(b"another secret, 32 bytes long!!!").decode()
    text = f"""
    # made by tsig-keygen, then edited
    /* the transfer key
       for the secondaries */
    key   xfr-key. {{ algorithm HMAC-SHA256 ; // unquoted name, upper case
        secret
          "{SECRET}" ;
    }} ;
    key "notify-key" {{ algorithm "hmac-md5"; secret "{other}"; }};
    """
    path = write(tmp_path, text)
    first = load_key_file(path)
    assert (first.name, first.secret) == (dns.name.from_text("xfr-key."), SECRET_BYTES)
    named = load_key_file(path, "notify-key")
    assert named.algorithm == dns.tsig.HMAC_MD5
    assert named.secret == base64.b64decode(other)
    assert load_key_file(path, "xfr-key.").secret == SECRET_BYTES


def test_the_secret_alone_in_a_file(tmp_path: Path) -> None:
    key = load_key("xfr-key", "hmac-sha384", write(tmp_path, f"  {SECRET}\n", "xfr.secret"))
    assert key.name == dns.name.from_text("xfr-key.")
    assert key.algorithm == dns.tsig.HMAC_SHA384
    assert key.secret == SECRET_BYTES
    assert signs_and_verifies(key)


def test_the_secret_is_never_shown(tmp_path: Path) -> None:
    key = load_key_file(write(tmp_path, KEYGEN_OUTPUT))
    assert SECRET not in repr(key) and SECRET not in str(key)
    assert repr(key) == "<TSIG key xfr-key hmac-sha256>"
    assert SECRET not in repr({key.name: key})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no key clause"),
        ('options { directory "/tmp"; };', "holds no key clause"),
        (KEYGEN_OUTPUT.replace("hmac-sha256", "hmac-sha3"), "unknown algorithm 'hmac-sha3'"),
        (KEYGEN_OUTPUT.replace(f'"{SECRET}"', '"not base64!"'), "the secret is not base64"),
        (KEYGEN_OUTPUT.replace(f'\tsecret "{SECRET}";\n', ""), "key xfr-key has no secret"),
        (KEYGEN_OUTPUT.replace("\talgorithm hmac-sha256;\n", ""), "has no algorithm"),
        (KEYGEN_OUTPUT.replace("};", "}"), "ends where ';' was expected"),
        (KEYGEN_OUTPUT.replace("secret", "secrt"), "line 3: unknown setting 'secrt'"),
        (KEYGEN_OUTPUT.replace('"xfr-key"', '"bad..name"'), "is not a valid key name"),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(KeyFileError) as raised:
        load_key_file(path)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert problem in message
    assert "\n" not in message
    assert SECRET not in message
    assert isinstance(raised.value, ValueError)


def test_more_errors(tmp_path: Path) -> None:
    missing = tmp_path / "absent.key"
    with pytest.raises(KeyFileError, match=f"^{missing}: no such file$"):
        load_key_file(missing)
    path = write(tmp_path, KEYGEN_OUTPUT)
    with pytest.raises(KeyFileError, match="holds no key named 'other' \\(it holds xfr-key\\)"):
        load_key_file(path, "other")
    with pytest.raises(KeyFileError, match="holds a key clause, not just the secret"):
        load_key("xfr-key", "hmac-sha256", path)
    secret = write(tmp_path, "c2VjcmV0\n", "bad.secret")
    with pytest.raises(KeyFileError, match="unknown algorithm 'sha256'"):
        load_key("xfr-key", "sha256", secret)
    with pytest.raises(KeyFileError, match="the secret is not base64"):
        load_key("xfr-key", "hmac-sha256", write(tmp_path, "!!!", "worse.secret"))
