"""The study's offload cost model (Frennborn & Oliv 2022, section 2.4) and local cost, as pure functions.

Equations, per inference:
    t_RTT         = 2 · t_latency                                       (2.1)
    t_network_tot = t_RTT + s_input / B_upload + s_result / B_download  (2.2)
    t_OINF_tot    = t_OINF + t_network_tot                              (2.3)
    E_network_tot = s_input · e_upload + s_result · e_download          (2.4)
    E_OINF_tot    = t_OINF_tot · P_idle + E_network_tot                 (2.5)
    EDP           = energy per inference · latency                      (4.1)
"""

from __future__ import annotations

import math

from edgeoffload.decide.types import LocalOption, Objective, Prediction, RemoteOption


def rtt_ms(one_way_latency_ms: float) -> float:
    """Equation 2.1."""
    return 2.0 * one_way_latency_ms


def remote_cost(option: RemoteOption, idle_power_w: float, deadline_ms: float | None) -> Prediction:
    """Equations 2.1-2.5 for one endpoint: predicted latency (ms) and device energy (mJ) of offloading."""
    net = option.network
    upload_ms = 1000.0 * option.input_bytes / net.upload_bytes_per_s
    download_ms = 1000.0 * option.output_bytes / net.download_bytes_per_s
    network_ms = rtt_ms(net.one_way_latency_ms) + upload_ms + download_ms           # 2.2
    total_ms = option.server_ms + network_ms                                         # 2.3
    network_mj = (option.input_bytes * net.upload_nj_per_byte
                  + option.output_bytes * net.download_nj_per_byte) * 1e-6           # 2.4 (nJ -> mJ)
    energy_mj = total_ms * idle_power_w + network_mj                                 # 2.5 (ms · W = mJ)
    breakdown = {
        "rtt_ms": rtt_ms(net.one_way_latency_ms),
        "upload_ms": upload_ms,
        "download_ms": download_ms,
        "server_ms": option.server_ms,
        "network_energy_mj": network_mj,
        "idle_energy_mj": total_ms * idle_power_w,
    }
    return Prediction(option.target, "remote", total_ms, energy_mj, _meets(total_ms, deadline_ms), breakdown,
                      f"link profile {option.network.name} and idle power")


def local_cost(option: LocalOption, deadline_ms: float | None) -> Prediction:
    """A local target costs what was measured: latency, and energy = active power × latency."""
    energy_mj = option.latency_ms * option.power_w
    return Prediction(option.target, "local", option.latency_ms, energy_mj, _meets(option.latency_ms, deadline_ms),
                      {"power_w": option.power_w}, option.energy_source)


def score(prediction: Prediction, objective: Objective) -> float:
    """Lower is better. EDP is equation 4.1 (mJ·ms)."""
    if objective is Objective.LATENCY:
        return prediction.latency_ms
    if objective is Objective.ENERGY:
        return prediction.energy_mj
    return prediction.edp_mj_ms


def _meets(latency_ms: float, deadline_ms: float | None) -> bool:
    return deadline_ms is None or latency_ms <= deadline_ms


def is_usable(value: float) -> bool:
    """A cost figure that can take part in a decision (finite and non-negative)."""
    return math.isfinite(value) and value >= 0.0
