"""The endpoint's traffic rules (OnlineEndpoint in mfe.json; how-to-safely-rollout-online-endpoints):
`traffic` percentages go to existing deployments and sum to 100 (or are all 0); `mirrorTraffic` copies at most
50 % in total, to one deployment, which takes no live traffic."""

from __future__ import annotations

from typing import Any

from tools.azureml import arm
from tools.azureml.state import AmlState


def _weights(raw: Any, field: str) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise arm.bad_argument(f"{field} must be an object of deployment name -> percentage.", target=field)
    out: dict[str, int] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise arm.bad_argument(f"{field}['{name}'] must be an integer between 0 and 100.", target=field)
        out[str(name)] = value
    return out


def check(state: AmlState, endpoint: str, traffic_raw: Any, mirror_raw: Any) -> tuple[dict[str, int],
                                                                                        dict[str, int]]:
    traffic, mirror = _weights(traffic_raw, "traffic"), _weights(mirror_raw, "mirrorTraffic")
    deployments = {d.name: d for d in state.deployments_of(endpoint)}
    for field, weights in (("traffic", traffic), ("mirrorTraffic", mirror)):
        for name, value in weights.items():
            dep = deployments.get(name)
            if dep is None:
                raise arm.bad_argument(f"{field} names deployment '{name}', which does not exist in endpoint "
                                       f"'{endpoint}'.", target=field)
            if value > 0 and dep.serving is None:
                raise arm.bad_argument(f"Deployment '{name}' is in {dep.provisioning_state} state and serves no "
                                       f"model; it cannot take {field}.", target=field)
    total = sum(traffic.values())
    if total not in (0, 100):
        raise arm.bad_argument(f"Traffic values need to sum to 100 (or all be 0); they sum to {total}.",
                               target="traffic")
    mirrored = {n: v for n, v in mirror.items() if v > 0}
    if sum(mirrored.values()) > 50:
        raise arm.bad_argument("Mirror traffic values need to sum to at most 50.", target="mirrorTraffic")
    if len(mirrored) > 1:
        raise arm.bad_argument("Traffic can be mirrored to one deployment only.", target="mirrorTraffic")
    for name in mirrored:
        if traffic.get(name, 0) > 0:
            raise arm.bad_argument(f"Deployment '{name}' takes live traffic; it cannot also take mirror traffic.",
                                   target="mirrorTraffic")
    return traffic, mirror
