"""A meta-learner's options, read from its constructor.

The constructor is the one place where an algorithm declares an option:
its name and default in the signature, its type from the default or the
annotation, its meaning in the class docstring's `Args:`, its bounds in
the checks the constructor runs. The scripts' flags, `--helpfull`, the
presets' validation and `config.json` all come from `options_of(cls)`, so
a new option (or a new algorithm, `keras_meta.cli.registry.register`) is
on the command line without a line of `keras_meta/cli` changing.
"""

import dataclasses
import inspect
import re
import types

# Constructor arguments the run gives, never flags.
RUN_GIVEN = ("self", "learner", "ways", "name")
KINDS = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Option:
    """One constructor option: `kind` is bool, int, float or str; `optional`
    whether it takes None; `accepts_bool` for a str option that also takes
    True/False (MAML's `recompute`)."""

    name: str
    default: object
    kind: type
    optional: bool
    help: str
    accepts_bool: bool = False

    def parse(self, value):
        """A flag's value as the constructor takes it."""
        if self.accepts_bool and isinstance(value, str):
            lowered = value.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
        return value


def argument_docs(cls):
    """`{argument: text}` from the `Args:` section of `cls`'s docstring
    (Google style; `a, b: text` documents both)."""
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)+)", doc, re.M)
    if not match:
        return {}
    docs, names = {}, []
    for line in match.group(1).splitlines():
        entry = re.match(r"^    (\**\w[\w, ]*):\s*(.*)$", line)
        if entry:
            names = [n.strip() for n in entry.group(1).split(",")]
            for name in names:
                docs[name] = entry.group(2).strip()
        elif line.strip() and names:
            for name in names:
                docs[name] += " " + line.strip()
    return docs


def _kind(parameter):
    """`(kind, optional, accepts_bool)` of a parameter, from its annotation
    or, lacking one, its default."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        default = parameter.default
        if default is None or type(default) not in KINDS:
            return None, True, False
        return type(default), False, False
    args = (
        annotation.__args__
        if isinstance(annotation, types.UnionType)
        else (annotation,)
    )
    optional = type(None) in args
    kinds = [a for a in args if a in KINDS]
    if str in kinds and bool in kinds:
        return str, optional, True
    return (kinds[0] if kinds else None), optional, False


def options_of(cls):
    """The options of meta-learner class `cls`, in signature order: its
    constructor's, then those of each base class it hands `**kwargs` to,
    up to `MetaLearner`'s (whose `**kwargs` are `keras.Model`'s)."""
    from keras_meta.engine import MetaLearner

    found = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        docs = argument_docs(klass)
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.name in RUN_GIVEN or p.kind in (
                p.VAR_KEYWORD,
                p.VAR_POSITIONAL,
            ):
                continue
            if p.name in found:
                # "as for `MAML`": a base class says it better.
                if found[p.name].help.startswith(("as for", "As for")) or (
                    not found[p.name].help
                ):
                    if docs.get(p.name):
                        found[p.name] = dataclasses.replace(
                            found[p.name], help=docs[p.name]
                        )
                continue
            kind, optional, accepts_bool = _kind(p)
            if kind is None:
                raise TypeError(
                    f"{cls.__name__}.__init__'s option {p.name!r} needs a "
                    "default of type bool, int, float or str, or an "
                    "annotation such as `int | None`, to be a flag."
                )
            found[p.name] = Option(
                p.name,
                p.default,
                kind,
                optional,
                docs.get(p.name, ""),
                accepts_bool,
            )
        hands_on = any(p.kind == p.VAR_KEYWORD for p in parameters)
        if klass is MetaLearner or not hands_on:
            break
    return tuple(found.values())


def defaults_of(cls):
    """`{option: default}` of `cls`."""
    return {o.name: o.default for o in options_of(cls)}
