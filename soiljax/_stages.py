"""Progress of a computation made of a few named stages (no JAX here).

``stages = Stages("world", 6, enabled)`` shows, when enabled, a tqdm bar on
stderr such as ``world: 2/6 [00:03, cell climate and covariates]``;
``stages("name")`` finishes the stage shown and starts ``name``;
``stages.close()`` finishes the last one.  Disabled, it does nothing.
"""

from __future__ import annotations


class Stages:
    def __init__(self, desc: str, total: int, enabled: bool):
        self.bar = None
        self._open = False
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="stage",
                            bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def __call__(self, name: str) -> None:
        if self.bar is None:
            return
        if self._open:
            self.bar.update(1)
        self._open = True
        self.bar.set_postfix_str(name)

    def close(self) -> None:
        if self.bar is None:
            return
        if self._open:
            self.bar.update(1)
            self._open = False
        self.bar.set_postfix_str("done")
        self.bar.close()
