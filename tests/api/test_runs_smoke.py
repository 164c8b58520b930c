import pytest

pytestmark = pytest.mark.django_db

RUN = {
    "external_id": "tb-airline-17-0",
    "task_description": "Change the flight of reservation 4WQ150",
    "task_type": "airline.change_flight",
    "status": "failure",
    "success_score": 0.0,
    "steps": [
        {"type": "message", "description": "user: I want to change my flight"},
        {
            "type": "tool_call",
            "tool": "get_reservation_details",
            "description": "get_reservation_details(reservation_id=4WQ150)",
            "result": {"status": "ok"},
        },
    ],
}


def test_posting_a_run_twice_returns_the_first(agent_client):
    """The same external_id posted twice stores one run and answers 201 then 200."""
    first = agent_client.post_json("/api/v1/runs/", RUN)
    assert first.status_code == 201, first.json()
    second = agent_client.post_json("/api/v1/runs/", RUN)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert len(first.json()["steps"]) == 2
