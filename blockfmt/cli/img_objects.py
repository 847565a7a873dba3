"""``--object``: checked the way qemu-img checks user-creatable objects, then kept unused.

VHDX, VDI and raw images never need an object (no encryption, no throttling), so blockfmt only
validates definitions: a ``secret`` fully (its data must be readable and decodable, as QEMU
requires when the object is created), the other user-creatable types by their ``id``. Errors are
qemu-img's texts, raised as :class:`~blockfmt.cli.img_common.Failure` at parse time, as qemu-img
exits inside its option loop.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import InvalidOptionError
from ..options import parse_option_list
from .img_common import Failure, ObjectHelp

__all__ = ["check_object"]

#: ``qemu-img --object help``
USER_CREATABLE_TYPES = (
    "authz-list",
    "authz-list-file",
    "authz-simple",
    "main-loop",
    "pr-manager-helper",
    "secret",
    "secret_keyring",
    "thread-context",
    "throttle-group",
    "tls-cipher-suites",
    "tls-creds-anon",
    "tls-creds-psk",
    "tls-creds-x509",
)
SECRET_PROPERTIES = {
    "data": "string",
    "file": "string",
    "format": "QCryptoSecretFormat",
    "iv": "string",
    "keyid": "string",
}
SECRET_FORMATS = ("raw", "base64")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def check_object(definition: str) -> None:
    """Validate one ``--object`` definition as qemu-img would create it.

    :raises Failure: with qemu-img's message for a bad definition.
    :raises ObjectHelp: for the help requests.
    """
    if definition == "help":
        listing = "".join(f"  {name}\n" for name in USER_CREATABLE_TYPES)
        raise ObjectHelp(f"List of user creatable objects:\n{listing}")
    pairs = parse_option_list(definition)
    if pairs and "=" not in definition.split(",", 1)[0] and pairs[0][0] not in ("help", "?"):
        pairs[0] = ("qom-type", pairs[0][0])  # QEMU's implied first key
    props: dict[str, str] = {}
    help_asked = False
    for key, value in pairs:
        if key in ("help", "?"):
            help_asked = True
        else:
            props[key] = value
    qom_type = props.pop("qom-type", None)
    if qom_type is None:
        raise Failure("Parameter 'qom-type' is missing")
    if qom_type not in USER_CREATABLE_TYPES:
        raise Failure(f"Parameter 'qom-type' does not accept value '{qom_type}'")
    if help_asked:
        raise ObjectHelp(_type_help(qom_type))
    object_id = props.pop("id", None)
    if object_id is None:
        raise Failure("Parameter 'id' is missing")
    if not _IDENTIFIER.fullmatch(object_id):
        raise InvalidOptionError(
            "Parameter 'id' expects an identifier",
            hint="Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
        )
    if qom_type == "secret":
        _check_secret(props)


def _type_help(qom_type: str) -> str:
    if qom_type != "secret":
        return f"{qom_type} options:\n"
    return "secret options:\n" + "".join(f"  {key}=<{kind}>\n" for key, kind in SECRET_PROPERTIES.items())


def _check_secret(props: dict[str, str]) -> None:
    """A secret must name its bytes exactly once, readable and in its declared format."""
    for key in props:
        if key not in SECRET_PROPERTIES:
            raise Failure(f"Parameter '{key}' is unexpected")
    fmt = props.get("format", "raw")
    if fmt not in SECRET_FORMATS:
        raise Failure(f"Parameter 'format' does not accept value '{fmt}'")
    if "file" in props and "data" in props:
        raise Failure("'file' and 'data' are mutually exclusive")
    if "keyid" in props:
        raise Failure(f"No secret with id '{props['keyid']}'")
    if "data" in props:
        data = props["data"]
    elif "file" in props:
        path = props["file"]
        try:
            with open(path, "rb") as source:
                data = source.read().decode("utf-8", "replace")
        except OSError as err:
            raise Failure(
                f"Unable to read {path}: Failed to open file \u201c{path}\u201d: {err.strerror}"
            ) from None
    else:
        raise Failure("Either 'file' or 'data' must be provided")
    if fmt == "base64":
        try:
            if not _BASE64.fullmatch(data):
                raise binascii.Error
            base64.b64decode(data, validate=True)
        except binascii.Error:
            raise Failure("Base64 data contains invalid characters") from None
