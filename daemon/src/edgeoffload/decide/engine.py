"""The decision rule: best option for the objective among those meeting the deadline, else the fastest.

Pure: takes a `DecisionRequest` snapshot and returns a `Decision`. No I/O, no clocks.
"""

from __future__ import annotations

from edgeoffload.decide.cost import is_usable, local_cost, remote_cost, score
from edgeoffload.decide.types import Decision, DecisionRequest, Prediction


def decide(request: DecisionRequest) -> Decision:
    """Choose where to run one request and explain why in one line."""
    excluded = list(request.excluded)
    predictions = _predict_all(request, excluded)
    if not predictions:
        why = "; ".join(f"{t} {r}" for t, r in excluded) or "no targets configured"
        return Decision(request.model, None, request.objective, request.deadline_ms, True,
                        f"no usable target: {why}", (), tuple(excluded))
    ranked = sorted(predictions, key=lambda p: (not p.meets_deadline, score(p, request.objective), p.latency_ms))
    best = ranked[0]
    if best.meets_deadline:
        reason = _reason_ok(best, ranked, request)
        miss = False
    else:
        best = min(predictions, key=lambda p: (p.latency_ms, score(p, request.objective)))
        ranked.remove(best)
        ranked.insert(0, best)
        reason = (f"no target meets the {request.deadline_ms:g} ms deadline; fastest is {best.target} "
                  f"at {best.latency_ms:.1f} ms (deadline miss)")
        miss = True
    return Decision(request.model, best.target, request.objective, request.deadline_ms, miss, reason,
                    tuple(ranked), tuple(excluded))


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


def _reason_ok(best: Prediction, ranked: list[Prediction], request: DecisionRequest) -> str:
    objective = request.objective.value
    value = {"latency": f"{best.latency_ms:.1f} ms", "energy": f"{best.energy_mj:.1f} mJ",
             "edp": f"{best.edp_mj_ms:.1f} mJ·ms"}[objective]
    parts = [f"lowest {objective} ({value})"]
    if request.deadline_ms is not None:
        parts.append(f"within the {request.deadline_ms:g} ms deadline")
    runner_up = next((p for p in ranked[1:] if p.meets_deadline), None)
    if runner_up is not None:
        mine, other = score(best, request.objective), score(runner_up, request.objective)
        ratio = other / mine if mine > 0 else float("inf")
        parts.append(f"{ratio:.2f}x better than {runner_up.target}")
    return f"{best.target}: " + ", ".join(parts)
