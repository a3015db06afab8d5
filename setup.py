"""The build step pyproject.toml cannot declare: a wheel carries conf/ inside the package (cnnlab/conf),
so that an installed cnnlab finds its configs from any folder. An editable install reads conf/ in place."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "cnnlab" / "conf"
            shutil.copytree(Path(__file__).resolve().parent / "conf", target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithConfigs})
