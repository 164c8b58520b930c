"""Forms of the reviewer console's actions."""

from django import forms

from learning.models import CandidateKind
from playbooks.models import Playbook

DECISIONS = [("approve", "Approve"), ("deny", "Deny"), ("conflict", "Mark conflicted")]


class NoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea)


class DenyForm(forms.Form):
    note = forms.CharField(
        max_length=4000,
        widget=forms.Textarea,
        error_messages={"required": "A denial needs a reason."},
    )


class DismissFindingForm(forms.Form):
    reason = forms.CharField(
        max_length=4000,
        error_messages={"required": "Dismissing a finding needs a reason."},
    )


class ApproveForm(NoteForm):
    override = forms.BooleanField(required=False)
    replace_strategy = forms.IntegerField(required=False, min_value=1)


class CandidateEditForm(forms.Form):
    content = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), max_length=20000
    )
    rationale = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=20000
    )
    playbook = forms.ModelChoiceField(
        queryset=Playbook.objects.none(),
        required=False,
        to_field_name="slug",
        empty_label="— none —",
    )
    memory_scope = forms.ChoiceField(
        required=False,
        choices=[("", "—"), ("user", "user"), ("namespace", "namespace")],
    )
    user_id = forms.CharField(required=False, max_length=200)
    note = forms.CharField(required=False, max_length=4000, label="Why (optional)")

    def __init__(self, *args, candidate, **kwargs):
        kwargs.setdefault(
            "initial",
            {
                "content": candidate.content,
                "rationale": candidate.rationale,
                "playbook": candidate.playbook.slug if candidate.playbook_id else None,
                "memory_scope": candidate.memory_scope,
                "user_id": candidate.user_id,
            },
        )
        super().__init__(*args, **kwargs)
        self.candidate = candidate
        self.fields["playbook"].queryset = Playbook.objects.filter(
            namespace_id=candidate.namespace_id
        ).order_by("slug")
        self.is_memory = candidate.kind in (
            CandidateKind.PREFERENCE,
            CandidateKind.DURABLE_FACT,
        )
        if not self.is_memory:
            del self.fields["memory_scope"]
            del self.fields["user_id"]

    def changes(self) -> dict:
        return {f: self.cleaned_data[f] for f in self.fields if f != "note"}


class BulkForm(forms.Form):
    decision = forms.ChoiceField(choices=DECISIONS)
    note = forms.CharField(required=False, max_length=4000)
    ids = forms.TypedMultipleChoiceField(coerce=int, required=False)
    all_matching = forms.BooleanField(required=False)
    query = forms.CharField(required=False, max_length=4000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any ids: the view keeps only those the reviewer may act on.
        self.fields["ids"].valid_value = lambda value: str(value).isdigit()

    def clean(self):
        data = super().clean()
        if not data.get("all_matching") and not data.get("ids"):
            raise forms.ValidationError("Select at least one candidate.")
        if data.get("decision") == "deny" and not (data.get("note") or "").strip():
            self.add_error("note", "A denial needs a reason.")
        return data
