"""The very first revocation on a fresh hwq: a token the API has cached cannot submit again.

Defect: before any token had been revoked, the revocation counter had no value, and a
submission from a cached token carried that absence as "check nothing"; the first revocation
then let the revoked token submit once more from the cache.
"""

from __future__ import annotations

from bench.local_stack import Stack


def test_the_first_revocation_stops_a_cached_token_from_submitting(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    token = stack.hwq("token", "create", "--role", "operator", "--name", "first-eve").strip()
    body = {"kind": "line", "payload": "*IDN?"}
    path = f"/devices/{device_name}/commands"
    assert stack.request("POST", path, token=token, body=body).status == 202
    queued = stack.device(device_name)["queue_depth"]
    (item,) = [i for i in stack.request("GET", "/tokens").body["items"] if i["name"] == "first-eve"]
    assert stack.request("DELETE", f"/tokens/{item['id']}").status == 204
    assert stack.request("POST", path, token=token, body=body).status == 401
    assert stack.device(device_name)["queue_depth"] == queued
