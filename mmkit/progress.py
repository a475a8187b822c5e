"""Progress bars that inform while a step runs and leave one line of plain text when it is done.

``progress(iterable, desc=...)`` is a ``tqdm`` bar. In a terminal it is tqdm's text bar on stderr. In a
Jupyter kernel it is *not* a widget: tqdm.auto's widget bars become "Error displaying widget: model not
found" once the kernel is gone (a saved notebook reopened, nbconvert HTML), and one widget per epoch per
head buried notebook 04's results behind "Show more outputs". Here a bar is one ``text/plain`` display
output, redrawn in place through its display id, so the saved notebook keeps its last state as text.

A bar opened while another one runs (an epoch's steps inside the epochs, a stage-1 run inside 05's grid)
is drawn as a further line of the outer bar's output instead of a new output, and that line goes when the
inner bar closes: the outer bar sums it up. A cell therefore keeps one line per top-level step, however
many epochs, heads or seeds ran inside it. A ``leave=False`` bar that finishes within ``delay``
seconds (default 1) is never shown at all.

Example:
    >>> for epoch in progress(range(3), desc="epochs", disable=True):
    ...     for step in progress(range(5), desc=f"epoch {epoch}", leave=False, disable=True):
    ...         pass
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any, Optional

from tqdm.std import tqdm as _text_tqdm

_NCOLS = 100  # a notebook has no terminal width to ask; 100 columns fit a JupyterLab cell


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, VS Code), False in a terminal or a script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _cell() -> int:
    from IPython import get_ipython

    shell = get_ipython()
    return int(getattr(shell, "execution_count", 0) or 0)


class NotebookBar(_text_tqdm):
    """A tqdm bar drawn as a ``text/plain`` display output updated in place (no widget, no stderr)."""

    _open: list[NotebookBar] = []  # the bars of this kernel that are running, outermost first

    def __init__(self, *args: Any, **kwargs: Any):
        self._handle: Any = None
        self._children: list[NotebookBar] = []
        self._text = ""
        self._cell = _cell()
        # Only a running bar of the same cell is a parent: one left open by an interrupted cell is not.
        self._parent: Optional[NotebookBar] = next(
            (b for b in reversed(self._open) if not b.disable and b._cell == self._cell), None
        )
        kwargs.setdefault("ncols", _NCOLS)
        kwargs.setdefault("ascii", False)  # the StringIO below would make tqdm fall back to "###"
        kwargs.setdefault("mininterval", 0.5)
        kwargs["file"] = io.StringIO()  # tqdm's own writer goes nowhere: display() draws
        if not kwargs.get("leave", True):
            kwargs.setdefault("delay", 1.0)
        super().__init__(*args, **kwargs)
        if not self.disable:
            self._open.append(self)
            if self._parent is not None:
                self._parent._children.append(self)

    def _lines(self) -> list[str]:
        lines = [self._text] if self._text else []
        for child in self._children:
            lines += child._lines()
        return lines

    def _draw(self) -> None:
        if self._parent is not None:
            self._parent._draw()
            return
        from IPython.display import display

        bundle = {"text/plain": "\n".join(self._lines())}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def display(self, msg: Optional[str] = None, pos: Optional[int] = None) -> bool:
        self._text = self.__str__() if msg is None else msg
        self._draw()
        return True

    def close(self) -> None:
        if self.disable:
            return
        super().close()  # draws the final state (leave=True) or an empty line (leave=False)
        if self in self._open:
            self._open.remove(self)
        if self._parent is not None:  # a nested bar's line goes; its parent's line sums it up
            self._parent._children.remove(self)
            self._parent._draw()


def progress(iterable: Optional[Iterable] = None, **kwargs: Any) -> _text_tqdm:
    """A ``tqdm`` bar (same arguments: ``desc``, ``total``, ``leave``, ``disable``, ``unit``, ...) that in a
    notebook leaves plain text instead of a widget (see the module docstring).

    Example:
        >>> bar = progress(total=3, desc="folds", disable=True)
        >>> for _ in range(3):
        ...     bar.update()
        >>> bar.close()
    """
    cls = NotebookBar if in_notebook() else _text_tqdm
    return cls(iterable, **kwargs)


__all__ = ["NotebookBar", "in_notebook", "progress"]
