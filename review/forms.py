"""Forms of the reviewer console's actions."""

from django import forms

from learning.limits import (
    MAX_GUIDELINE_TEXT,
    MAX_LESSON_PART,
    MAX_LESSON_TEXT,
    MAX_RATIONALE,
    MAX_REASON_TEXT,
)
from learning.models import MEMORY_KINDS, SHAPED_KINDS, CandidateKind, Polarity
from playbooks.models import MemoryKind, Playbook
from review.presenters import candidate_shape
from review.services import EDITABLE_KINDS

DECISIONS = [("approve", "Approve"), ("deny", "Deny"), ("conflict", "Mark conflicted")]
MAX_NOTE = 4000


def _ids(value) -> list[int]:
    """Ids from a comma-separated field or repeated fields ("12,15" or ["12", "15"])."""
    parts = value if isinstance(value, (list, tuple)) else [value]
    found = []
    for part in parts:
        for piece in str(part or "").split(","):
            piece = piece.strip()
            if piece.isdigit():
                found.append(int(piece))
    return list(dict.fromkeys(found))


class LabelsMixin(forms.Form):
    """A decision's canned reason and tags (checked against the namespace in the
    service); `group` names the near-identical candidates decided with this one."""

    reason = forms.IntegerField(required=False, min_value=1)
    tags = forms.CharField(required=False, max_length=2000)
    group = forms.CharField(required=False, max_length=20000)

    def clean_tags(self):
        raw = self.data.getlist("tags") if hasattr(self.data, "getlist") else []
        values = raw or [self.cleaned_data.get("tags") or ""]
        return [t.strip() for v in values for t in str(v).split(",") if t.strip()]

    def clean_group(self):
        return _ids(self.cleaned_data.get("group"))


class NoteForm(LabelsMixin):
    note = forms.CharField(required=False, max_length=MAX_NOTE, widget=forms.Textarea)


class DenyForm(LabelsMixin):
    note = forms.CharField(required=False, max_length=MAX_NOTE, widget=forms.Textarea)

    def clean(self):
        data = super().clean()
        if not (data.get("note") or "").strip() and not data.get("reason"):
            self.add_error("note", "A denial needs a reason.")
        return data


class DismissFindingForm(forms.Form):
    reason = forms.CharField(
        max_length=4000,
        error_messages={"required": "Dismissing a finding needs a reason."},
    )


class ApproveForm(NoteForm):
    override = forms.BooleanField(required=False)
    replace_strategy = forms.IntegerField(required=False, min_value=1)


class CandidateEditForm(forms.Form):
    """Edit before approving: the kind, the lesson (free text, or its shape: polarity,
    situation, directive, why — the text is then rendered from the shape), rationale
    and target. Only the fields the reviewer changed are passed on (`changes`)."""

    kind = forms.ChoiceField(
        required=False,  # left out: unchanged
        choices=[(k, k.replace("_", " ")) for k in EDITABLE_KINDS],
    )
    polarity = forms.ChoiceField(
        required=False,
        choices=[(Polarity.DO, "do"), (Polarity.AVOID, "avoid")],
    )
    when = forms.CharField(
        required=False,
        max_length=MAX_LESSON_PART,
        label="Situation (when)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    directive = forms.CharField(
        required=False,
        max_length=MAX_LESSON_TEXT,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    why = forms.CharField(
        required=False,
        max_length=MAX_LESSON_PART,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    content = forms.CharField(
        label="Text",
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=MAX_LESSON_TEXT,
        help_text="free text: its polarity and situation are read from it",
    )
    rationale = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=MAX_RATIONALE,
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
    note = forms.CharField(required=False, max_length=MAX_NOTE, label="Why (optional)")

    SHAPE = ("polarity", "when", "directive", "why")

    def __init__(self, *args, candidate, **kwargs):
        shape = candidate_shape(candidate)
        kwargs.setdefault(
            "initial",
            {
                "kind": candidate.kind,
                "polarity": shape["polarity"] or Polarity.DO,
                "when": shape["when"],
                "directive": shape["directive"],
                "why": shape["why"],
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
        self.is_memory = candidate.kind in MEMORY_KINDS
        self.is_shaped = candidate.kind in SHAPED_KINDS
        if candidate.kind == CandidateKind.PATCH_SKILL:
            del self.fields["kind"]
        if not self.is_shaped:
            for name in self.SHAPE:
                del self.fields[name]
        if not self.is_memory:
            del self.fields["memory_scope"]
            del self.fields["user_id"]

    def changes(self) -> dict:
        """The fields whose value differs from the candidate's (so an untouched
        polarity is never "stated" by saving the form)."""
        changed = {}
        for name in self.fields:
            if name == "note":
                continue
            value = self.cleaned_data.get(name)
            initial = self.initial.get(name)
            if name == "playbook":
                slug = value.slug if value is not None else None
                if slug != initial:
                    changed[name] = value
            elif name in ("kind", "polarity") and not value:
                continue  # not sent: unchanged
            elif (value or "") != (initial or ""):
                changed[name] = value
        return changed


class BulkForm(forms.Form):
    decision = forms.ChoiceField(choices=DECISIONS)
    note = forms.CharField(required=False, max_length=MAX_NOTE)
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


class UndoForm(forms.Form):
    ids = forms.CharField(max_length=60000)
    next = forms.CharField(required=False, max_length=4000)

    def clean_ids(self):
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        ids = _ids(raw or self.cleaned_data["ids"])
        if not ids:
            raise forms.ValidationError("Name the candidates to undo.")
        return ids


class GuidelineForm(forms.Form):
    text = forms.CharField(
        required=False,
        max_length=MAX_GUIDELINE_TEXT,
        widget=forms.Textarea(attrs={"rows": 12}),
        help_text="markdown",
    )


class ReasonForm(forms.Form):
    id = forms.IntegerField(required=False, min_value=1)
    text = forms.CharField(max_length=MAX_REASON_TEXT)
    tags = forms.CharField(required=False, max_length=2000, help_text="comma separated")
    active = forms.BooleanField(required=False, initial=True)

    def clean_tags(self):
        return [t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()]


class TagForm(forms.Form):
    slug = forms.CharField(max_length=50, label="Tag")
    label = forms.CharField(max_length=100, required=False)
    delete = forms.BooleanField(required=False)


class MemoryEditForm(forms.Form):
    kind = forms.ChoiceField(choices=MemoryKind.choices)
    content = forms.CharField(
        max_length=MAX_LESSON_TEXT, widget=forms.Textarea(attrs={"rows": 3})
    )
    importance = forms.FloatField(min_value=0, max_value=1)
    user_id = forms.CharField(max_length=200, required=False)
    entity = forms.CharField(max_length=200, required=False)
    note = forms.CharField(max_length=MAX_NOTE, required=False, label="Why (optional)")
