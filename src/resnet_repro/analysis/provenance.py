"""Where the numbers of a table or figure come from: commit (and dirty tree), hardware, torch/CUDA, precision, the
training command; read from the runs' summaries. A field on which the runs disagree is flagged, never hidden."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field

NET, SEED = "<net>", "<seed>"


def command_template(run) -> str:
    """The run's training command with its net and seed replaced by placeholders, so that the runs of one sweep
    share one template (`python scripts/train.py experiment=demo model=<net> seed=<seed>`)."""
    command = run.summary.get("command") or "?"
    try:
        tokens = shlex.split(command)
    except ValueError:
        return command
    out = []
    for token in tokens:
        q = shlex.quote(token)  # names and seeds are alphanumeric: quoting leaves them intact for the substitutions
        # the net, also as the name of its experiment file (experiment=imagenet/resnet34b: ResNet-34 B)
        q = re.sub(rf"(?<![A-Za-z0-9]){re.escape(run.model)}[a-z]?(?![A-Za-z0-9])", NET, q)
        q = re.sub(rf"(?<![A-Za-z0-9_])seed(=?){run.seed}(?![0-9])", rf"seed\g<1>{SEED}", q)
        out.append(q)
    return " ".join(out)


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def hardware(s: dict) -> str:
    """The GPU's name (x processes), or "cpu (model, threads)" from the run's summary (records from before the CPU
    was recorded say so)."""
    ws = s.get("world_size") or 1
    device = s.get("device") or "?"
    if device == "cpu":
        device = f"cpu ({s.get('cpu') or 'model not recorded'})"
    return device + (f" x{ws}" if ws != 1 else "")


def machine(device) -> str:
    """This process's hardware, as hardware() shows a run's: the GPU's name, or the CPU's with torch's threads."""
    import torch

    from ..engine.records import cpu_name

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return hardware({"device": "cpu", "cpu": f"{cpu_name()}, {torch.get_num_threads()} threads"})


def _commit(s: dict) -> str:
    c = s.get("git_commit")
    return (c[:7] if c else "?") + (" (uncommitted changes)" if s.get("git_dirty") else "")


FIELDS = {  # name shown: how to read it from a summary
    "commit": _commit,
    "hardware": hardware,
    "torch": lambda s: str(s.get("torch") or "?"),
    "CUDA": lambda s: str(s.get("cuda") or "none"),
    "precision": lambda s: str(s.get("precision") or "?"),
}


def _values(counts: Counter) -> str:
    if len(counts) == 1:
        return next(iter(counts))
    return " / ".join(f"{v} ({_runs(k)})" for v, k in counts.most_common())


@dataclass
class Provenance:
    """Counts of each field's values over the runs of one table or figure."""

    values: dict[str, Counter] = field(default_factory=dict)  # field -> value -> number of runs
    commands: Counter = field(default_factory=Counter)
    n: int = 0

    @property
    def disagreements(self) -> list[str]:
        return [k for k, c in self.values.items() if len(c) > 1] + (["command"] if len(self.commands) > 1 else [])

    @property
    def dirty(self) -> bool:
        return any("uncommitted" in v for v in self.values.get("commit", {}))

    @property
    def fields(self) -> str:
        """Each field's value; where the runs disagree, its values with their numbers of runs."""
        return ", ".join(f"{k} {_values(c)}" for k, c in self.values.items())

    @property
    def flags(self) -> list[str]:
        out = []
        if bad := self.disagreements:
            out.append("runs disagree on " + ", ".join(bad))
        if self.dirty:
            out.append("code with uncommitted changes")
        return out

    def line(self) -> str:
        """The Markdown line under a table or figure."""
        if not self.n:
            return "Provenance: no runs.\n"
        cmds = self.commands.most_common()
        cmd = "; ".join(f"`{c}`" + (f" ({_runs(k)})" if len(cmds) > 1 else "") for c, k in cmds)
        flag = "".join(f" **Flagged: {f}.**" for f in self.flags)
        return f"Provenance ({_runs(self.n)}): {self.fields}; command {cmd}.{flag}\n"

    def short(self) -> str:
        """One line for the foot of a figure (the command is in the report)."""
        if not self.n:
            return ""
        return self.fields + "".join(f" [{f}]" for f in self.flags)


def provenance(runs) -> Provenance:
    p = Provenance(values={k: Counter() for k in FIELDS}, n=len(runs))
    for r in runs:
        for k, read in FIELDS.items():
            p.values[k][read(r.summary)] += 1
        p.commands[command_template(r)] += 1
    return p
