"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class CnnlabError(Exception):
    """A problem with the user's input (config, data, checkpoint), not a bug."""


class DataError(CnnlabError):
    """The dataset is missing, corrupt or inconsistent with the config."""


class ConfigError(CnnlabError):
    """A config value is invalid or inconsistent with another one."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, unreadable, or does not fit the data or model asked for."""


def reason_of(error: BaseException, limit: int = 160) -> str:
    """An exception as a short clause for a one-line message: its type and first line (``KeyError: 101``),
    a line longer than ``limit`` cut after a whole word (``...``)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def user_error(error: BaseException) -> CnnlabError | None:
    """The CnnlabError behind ``error``, also when a library (e.g. Hydra's instantiate) wrapped it."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, CnnlabError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Print a user error as one line and exit with status 2; bugs keep their traceback."""
    try:
        yield
    except Exception as error:
        cause = user_error(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


@contextmanager
def hydra_errors_in_one_line(config_dir: str, config_name: str) -> Iterator[None]:
    """Around an entry point's ``@hydra.main`` function: an override of a key the config does not have
    (``trainer.max_epoch=1``) is one ``error:`` line naming the closest existing key, not Hydra's advice
    to add it (``+trainer.max_epoch=1``, which then fails inside the code it configures).

    An unknown option of a config group (``model=smallCNN``) is one line too, with the closest option and
    the list of them.

    Hydra prints composition errors itself and exits; with ``HYDRA_FULL_ERROR=1`` it raises them instead,
    so it is set to 1 here (unless the user set it to 1) and its other errors are printed as Hydra would.
    """
    from hydra.errors import ConfigCompositionException, MissingConfigException

    users_value = os.environ.get("HYDRA_FULL_ERROR")
    # as Hydra reads it (hydra/_internal/utils.py, _is_env_set): "1" only; 0 or "" mean short errors
    user_asked_full_errors = users_value == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except ConfigCompositionException as error:
        if user_asked_full_errors:
            raise
        option = _unknown_option(error) if isinstance(error, MissingConfigException) else None
        if option is not None:
            print(f"error: {option}", file=sys.stderr)
            raise SystemExit(2) from None
        unknown = _unknown_override(error)
        if unknown is None:  # e.g. an unknown option in a config file: Hydra's message lists the options
            print(str(error).strip(), file=sys.stderr)
            if error.__cause__ is not None:
                print(str(error.__cause__).strip(), file=sys.stderr)
            raise SystemExit(1) from None
        key, override = unknown
        # the config groups chosen on the command line decide which keys exist (model=hog_svm has model.C)
        groups = [
            a for a in sys.argv[1:] if re.fullmatch(r"[\w/]+=[^,=]*", a) and not a.startswith(key + "=")
        ]
        print(f"error: {_did_you_mean(key, override, config_dir, config_name, groups)}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if users_value is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = users_value


def _unknown_option(error: Exception) -> str | None:
    """``there is no model option smallCNN; did you mean smallcnn? ...`` for an option typed on the
    command line that its group lacks; None for other missing configs (e.g. one named in a config file)."""
    import difflib

    missing, options = getattr(error, "missing_cfg_file", None), getattr(error, "options", None)
    if not missing or not options or "/" not in missing:
        return None
    group, option = missing.rsplit("/", 1)
    typed = [
        value
        for argument in sys.argv[1:]
        if argument.lstrip("+~").split("=", 1)[0] == group and "=" in argument
        for value in argument.split("=", 1)[1].split(",")
    ]
    if option not in typed:
        return None
    by_case = {name.lower(): name for name in options}
    close = [by_case[option.lower()]] if option.lower() in by_case else []
    close = close or difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    problem = f"there is no {group} option {option}"
    listed = ", ".join(options)
    if close:
        return f"{problem}; did you mean {close[0]}? ({group}={close[0]}); the options: {listed}"
    return f"{problem}; choose one of: {listed}"


def _unknown_override(error: Exception) -> tuple[str, str] | None:
    """(key, override) of "Could not override 'key'. To append to your config use +override"."""
    match = re.search(r"Could not override '([^']+)'\.\s*To append to your config use \+(\S+)", str(error))
    return (match.group(1), match.group(2)) if match else None


def _did_you_mean(key: str, override: str, config_dir: str, config_name: str, groups: list[str]) -> str:
    import difflib

    keys = _config_keys(config_dir, config_name, groups) or _config_keys(config_dir, config_name, [])
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    if close:
        value = override.split("=", 1)[1] if "=" in override else "..."
        return f"{key} is not a setting of this config; did you mean {close[0]}? ({close[0]}={value})"
    return (
        f"{key} is not a setting of this config and none is close to it; check the spelling, or add a new "
        f"key on purpose with +{override}"
    )


def _config_keys(config_dir: str, config_name: str, overrides: list[str]) -> list[str]:
    """Every key of the config composed with ``overrides`` (config groups included), dotted."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir, version_base="1.3"):
            config = OmegaConf.to_container(compose(config_name, overrides), resolve=False)
    except Exception:  # a suggestion is a courtesy: never fail the error message on it
        return []

    def walk(node: object, prefix: str) -> list[str]:
        if not isinstance(node, dict):
            return []
        found = []
        for name, value in node.items():
            found.append(f"{prefix}{name}")
            found.extend(walk(value, f"{prefix}{name}."))
        return found

    return walk(config, "")
