"""The base of integration stages that route a real object's calls through themselves while installed."""

from __future__ import annotations

from accel3d.core.hooks import PatchSet


class InstalledStage:
    """A stage that routes calls of a real object through itself while installed (``attach`` / ``detach``), by
    patches owned by the stage: detaching gives the object's instance dictionary back as it was.

    Subclasses implement ``_install(patches)``; ``accel3d.apply`` installs the stages a stack uses.

    Example::

        class Probe(InstalledStage):
            def _install(self, patches):
                patches.wrap(model, "forward", lambda original: original)

        stage = Probe().attach()
        stage.detach()
    """

    name = "installed_stage"
    composable = False  # one stage per object: a second is refused (PatchConflictError)

    def __init__(self) -> None:
        self._patches: PatchSet | None = None

    @property
    def attached(self) -> bool:
        return self._patches is not None

    def attach(self) -> InstalledStage:
        if self._patches is not None:
            raise RuntimeError(f"{type(self).__name__}: already attached")
        patches = PatchSet(self.name, owner=self)
        try:
            self._install(patches)
        except BaseException:
            patches.restore()
            raise
        self._patches = patches
        return self

    def detach(self) -> None:
        if self._patches is not None:
            patches, self._patches = self._patches, None
            patches.restore()

    def _install(self, patches: PatchSet) -> None:
        raise NotImplementedError
