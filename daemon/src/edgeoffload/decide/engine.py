"""The decision rule: best option for the objective among those meeting the deadline, else the fastest.

Pure: takes a `DecisionRequest` snapshot and returns a `Decision`. No I/O, no clocks.
"""

from __future__ import annotations

from edgeoffload.decide.cost import is_usable, local_cost, remote_cost, score
from edgeoffload.decide.types import Decision, DecisionRequest, Objective, Prediction


def decide(request: DecisionRequest) -> Decision:
    """Choose where to run one request; `Decision.reason` explains it in one line."""
    excluded = list(request.excluded)
    predictions = _predict_all(request, excluded)
    objective, fallback = request.objective, None
    if request.energy_unknown is not None and objective is not Objective.LATENCY:
        objective = Objective.LATENCY
        fallback = f"energy unknown ({request.energy_unknown}): {request.objective.value} decided on latency"
    if not predictions:
        return Decision(request.model, None, objective, request.deadline_ms, True, (), tuple(excluded), fallback)
    ranked = sorted(predictions, key=lambda p: (not p.meets_deadline, score(p, objective), p.latency_ms))
    miss = not ranked[0].meets_deadline
    if miss:  # nothing meets the deadline: the fastest, flagged as a miss
        best = min(predictions, key=lambda p: (p.latency_ms, score(p, objective)))
        ranked.remove(best)
        ranked.insert(0, best)
    return Decision(request.model, ranked[0].target, objective, request.deadline_ms, miss, tuple(ranked),
                    tuple(excluded), fallback)


def explain(d: Decision) -> str:
    """The one-line reason of a decision."""
    reason = _explain_choice(d)
    return reason if d.objective_fallback is None else f"{reason} ({d.objective_fallback})"


def _explain_choice(d: Decision) -> str:
    if d.target is None:
        why = "; ".join(f"{t} {r}" for t, r in d.excluded) or "no targets configured"
        return f"no usable target: {why}"
    best = d.predictions[0]
    if d.deadline_miss:
        return (f"no target meets the {d.deadline_ms:g} ms deadline; fastest is {best.target} "
                f"at {best.latency_ms:.1f} ms (deadline miss)")
    objective = d.objective.value
    value = {"latency": f"{best.latency_ms:.1f} ms", "energy": f"{best.energy_mj:.1f} mJ",
             "edp": f"{best.edp_mj_ms:.1f} mJ·ms"}[objective]
    parts = [f"lowest {objective} ({value})"]
    if d.deadline_ms is not None:
        parts.append(f"within the {d.deadline_ms:g} ms deadline")
    runner_up = next((p for p in d.predictions[1:] if p.meets_deadline), None)
    if runner_up is not None:
        mine, other = score(best, d.objective), score(runner_up, d.objective)
        ratio = other / mine if mine > 0 else float("inf")
        parts.append(f"{ratio:.2f}x better than {runner_up.target}")
    return f"{best.target}: " + ", ".join(parts)


def _predict_all(request: DecisionRequest, excluded: list[tuple[str, str]]) -> list[Prediction]:
    allowed = request.allowed_targets
    out: list[Prediction] = []
    for option in request.local:
        if allowed is not None and option.target not in allowed:
            excluded.append((option.target, "not in the policy's allowed_targets"))
        elif not (is_usable(option.latency_ms) and is_usable(option.power_w)):
            excluded.append((option.target, "no usable latency or power estimate"))
        else:
            out.append(local_cost(option, request.deadline_ms))
    for option in request.remote:
        if request.never_offload:
            excluded.append((option.target, f"policy never offloads {request.model}"))
        elif allowed is not None and option.target not in allowed:
            excluded.append((option.target, "not in the policy's allowed_targets"))
        else:
            pred = remote_cost(option, request.idle_power_w, request.deadline_ms)
            if is_usable(pred.latency_ms) and is_usable(pred.energy_mj):
                out.append(pred)
            else:
                excluded.append((option.target, "no usable link or server estimate"))
    return out
