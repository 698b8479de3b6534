"""Identifiers drawn from a seeded random generator, so reruns reproduce them.

:func:`uuid.uuid4` reads the operating system's entropy, which would break
determinism; these helpers format bits from a :class:`random.Random` instead.

Examples
--------
>>> import random
>>> rng = random.Random(1)
>>> event_id = uuid4_from(rng.getrandbits(128))
>>> len(event_id), event_id[14], event_id[19] in "89ab"
(36, '4', True)
>>> import uuid
>>> uuid.UUID(event_id).version
4
>>> hex_id(random.Random(1), "cart-", 8)
'cart-2265b1f5'
"""

from __future__ import annotations

import random
from typing import Final

# Version nibble (4) and RFC 4122 variant bits (10xx) of a random UUID.
_CLEAR: Final = ~((0xF << 76) | (0x3 << 62))
_SET: Final = (0x4 << 76) | (0x2 << 62)


def uuid4_from(bits: int) -> str:
    """Format 128 random bits as a version-4 UUID string (lower-case, hyphenated)."""
    h = f"{(bits & _CLEAR) | _SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex_id(rng: random.Random, prefix: str, digits: int) -> str:
    """``prefix`` followed by ``digits`` random hexadecimal digits."""
    return f"{prefix}{rng.getrandbits(4 * digits):0{digits}x}"
