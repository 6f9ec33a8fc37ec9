"""The node table: every artifact of a run as (stage, key, path, spec, parents).

A node's key covers its stage's key namespace and version, its spec and its parents'
keys (keys.py); its path is its stage record's output pattern under the results
folder. `job` holds what the job needs besides (threads, batch sizes, checkpoint
intervals, file paths): settings that do not change the result and so stay out of
the key. The rules, `status` and `gc` all read this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..keys import artifact_key
from ..stages import get as get_stage


@dataclass(frozen=True)
class Node:
    rule: str  # the stage that makes it
    key: str
    path: str
    spec: dict
    parents: dict  # role -> key, or list of keys
    job: dict = field(default_factory=dict)


class NodeTable:
    def _init_table(self, results: str) -> None:
        self._results_str = results
        self.nodes: dict[str, Node] = {}
        self._by_rule: dict[str, list[str]] = {}
        self._dynamic: dict[str, dict] = {}  # node key -> parents known once a checkpoint ran
        self._after: dict[str, dict] = {}  # node key -> inputs that only order its job (not in its key)

    def add(self, stage: str, spec: dict, parents: dict, job: dict | None = None, key_as: str | None = None,
            mkey: str | None = None) -> str:
        """Add a node made by `stage`, keyed in the stage's namespace (or `key_as`'s: a
        retrain made by fine_tune is keyed as train_full's); `mkey`: the model whose
        files it is."""
        record = get_stage(stage)
        key = artifact_key(get_stage(key_as).key_name if key_as else record.key_name, spec, parents)
        if key not in self.nodes:
            path = self.path(record.output.format(key=key, mkey=mkey))
            self.nodes[key] = Node(stage, key, path, spec, parents, job or {})
            self._by_rule.setdefault(stage, []).append(key)
            if record.scratch:
                self.nodes[key].job.setdefault("scratch", self.scratch_dir(key))
        return key

    def node(self, key: str, rule: str | None = None) -> Node:
        n = self.nodes.get(key)
        if n is None or (rule is not None and n.rule != rule):
            raise KeyError(f"no {rule or 'node'} with key {key} in this plan")
        return n

    def keys(self, rule: str) -> list[str]:
        return list(self._by_rule.get(rule, []))

    def path(self, *parts) -> str:
        return os.path.join(self._results_str, *parts)

    def scratch_dir(self, key: str) -> str:
        return self.path("scratch", key)

    def parent_keys(self, key: str) -> list[str]:
        """Every parent key of a node, those checkpoints made known included."""
        parents = {**self.nodes[key].parents, **self._dynamic.get(key, {})}
        return [k for p in parents.values() for k in (p if isinstance(p, list) else [p])]

    def inputs(self, key: str) -> dict:
        """role -> path (or list of paths) of a node's parents."""
        out = {}
        parents = {**self.nodes[key].parents, **self._dynamic.get(key, {}), **self._after.get(key, {})}
        for role, parent in parents.items():
            if isinstance(parent, list):
                out[role] = [self.nodes[p].path for p in parent]
            elif parent in self.nodes:
                out[role] = self.nodes[parent].path
        return out

    def rule_inputs(self, key: str) -> dict:
        """`inputs` as the rule declares them. A job that reads its members' shards
        (training, conditioning; `job` lists them) waits only for the shard set's stamp,
        so its DAG edges do not grow with its members; a finished one (outputs are atomic)
        waits for nothing, so a new stamp (a changed contributor) never reruns a model that
        does not hold it."""
        out = self.inputs(key)
        node, stamp = self.nodes[key], getattr(self, "shard_set_key", None)
        if stamp and get_stage(node.rule).reads_members and isinstance(out.get("shards"), list):
            if os.path.exists(node.path):
                del out["shards"]
            else:
                out["shards"] = [self.nodes[stamp].path]
        return out

    def job(self, key: str) -> dict:
        """Everything a job needs: its spec, inputs, output and unkeyed settings."""
        n = self.nodes[key]
        return {"rule": n.rule, "key": key, "spec": n.spec, "inputs": self.inputs(key), "out": n.path, **n.job}
