"""What the self-contained HTML reports share: pictures inlined as data URIs, one style."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

#: the reports' style sheet (verdict classes v-NAME colour the strong ones)
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}
.v-exact,.v-copy,.v-generated{color:#b00020;font-weight:600}.v-near_duplicate{color:#c75b00}
.v-likely_generated,.v-partly_generated{color:#c75b00;font-weight:600}
.v-similar{color:#8a6d00}.v-none,.v-no_evidence{color:#555}
.v-captured{color:#1b6e20;font-weight:600}
img{max-width:100%;border:1px solid #ddd}
section{border-top:1px solid #eee;margin-top:1.5em;padding-top:.5em}
.bar{display:inline-block;width:200px;height:10px;background:#eee;position:relative}
.bar span{position:absolute;top:0;bottom:0;left:0;background:#555}
.bar i{position:absolute;top:-3px;bottom:-3px;width:2px;background:#b00020}
"""


def jpeg(picture: np.ndarray, max_side: int = 900, quality: int = 82) -> bytes:
    """An H x W x 3 uint8 picture as JPEG bytes, shrunk to at most ``max_side`` pixels a side
    (never enlarged)."""
    im = Image.fromarray(picture)
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def data_uri(picture: np.ndarray, max_side: int = 900) -> str:
    """An H x W x 3 uint8 picture as an inline JPEG, at most ``max_side`` pixels a side."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg(picture, max_side)).decode()


def counts_table(counts: dict[str, int]) -> str:
    """One row of counts under their verdict names, each coloured by its verdict class."""
    head = "".join(f"<th>{v}</th>" for v in counts)
    cells = "".join(f"<td class='v-{v}'>{n}</td>" for v, n in counts.items())
    return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"
