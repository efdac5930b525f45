"""DeepDream: backbones, objectives, the dream loop, zoom animations, the `dream`/`layers` commands.

`reverie.dream` is both this package and the public function `reverie.dream(image, ...)`:
once any submodule is imported, Python binds the package to the name `reverie.dream`, so the
package itself is made callable and forwards to `reverie.dream.dream.dream`.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from reverie.dream.dream import dream

        return dream(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
