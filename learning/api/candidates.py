"""Learning candidates API: list/detail with CandidateFilter, agent proposals, and the
review actions (approve, deny, conflict) for reviewer tokens."""
from rest_framework import serializers

from learning.models import CandidateKind, LearningCandidate


class CandidateEvidenceSerializer(serializers.Serializer):
    run = serializers.UUIDField(source="trajectory_id")
    step_indexes = serializers.ListField(child=serializers.IntegerField())
    reflection = serializers.IntegerField(source="reflection_id", allow_null=True)


class CandidateOutputSerializer(serializers.ModelSerializer):
    """A candidate as the API (and the console's JSON) returns it. Needs
    `candidate_list`'s select_related/prefetch_related to stay at constant queries."""

    playbook = serializers.SerializerMethodField()
    skill = serializers.SerializerMethodField()
    evidence_runs = serializers.SerializerMethodField()
    evidence = serializers.SerializerMethodField()
    target = serializers.SerializerMethodField()

    class Meta:
        model = LearningCandidate
        fields = [
            "id", "kind", "status", "content", "rationale", "confidence", "playbook",
            "skill", "task_type", "agent", "target", "evidence_runs", "evidence_count",
            "evidence", "reflection", "source", "proposed_by", "below_floor",
            "audited_at", "audit", "max_severity", "created_at", "updated_at",
            "decided_by", "decision_note", "decided_at", "apply_error", "applied_at",
            "applied_version", "auto_applied", "superseded_by", "patch",
        ]
        read_only_fields = fields

    def get_playbook(self, candidate) -> str | None:
        return candidate.playbook.slug if candidate.playbook_id else None

    def get_skill(self, candidate) -> str | None:
        return candidate.skill.slug if candidate.skill_id else None

    def _evidence(self, candidate):
        return sorted(candidate.evidence.all(), key=lambda e: (e.created_at, e.pk))

    def get_evidence_runs(self, candidate) -> list[str]:
        return [str(e.trajectory_id) for e in self._evidence(candidate)]

    def get_evidence(self, candidate) -> list[dict]:
        return CandidateEvidenceSerializer(self._evidence(candidate), many=True).data

    def get_target(self, candidate) -> dict:
        if candidate.kind in (CandidateKind.PREFERENCE, CandidateKind.DURABLE_FACT):
            return {
                "type": "memory",
                "scope": candidate.memory_scope or "namespace",
                "user_id": candidate.user_id,
                "entity": candidate.entity,
            }
        if candidate.kind == CandidateKind.PATCH_SKILL:
            return {"type": "skill", "skill": self.get_skill(candidate),
                    "base_hash": candidate.base_hash}
        return {"type": "playbook", "playbook": self.get_playbook(candidate)}
