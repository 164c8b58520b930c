"""Console forms for editing playbooks, strategies, skills and the hygiene policy."""

from django import forms

from learning.limits import MAX_LESSON_PART, MAX_LESSON_TEXT
from playbooks.models import LearningMode, Scope, StrategyType
from playbooks.recall import DEFAULT_BUDGET, MAX_BUDGET


def _lines(value: str) -> list[str]:
    return [
        line.strip()
        for line in (value or "").replace(",", "\n").splitlines()
        if line.strip()
    ]


class PlaybookCreateForm(forms.Form):
    namespace = forms.ChoiceField()
    slug = forms.SlugField(max_length=100, help_text="lowercase, digits and hyphens")
    name = forms.CharField(max_length=200, required=False)
    scope = forms.ChoiceField(choices=Scope.choices, initial=Scope.TEAM)
    mode = forms.ChoiceField(choices=LearningMode.choices, initial=LearningMode.PROPOSE)

    def __init__(self, *args, namespaces=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["namespace"].choices = [(ns.slug, ns.slug) for ns in namespaces]


class PlaybookSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False
    )
    scope = forms.ChoiceField(choices=Scope.choices)
    mode = forms.ChoiceField(choices=LearningMode.choices)
    auto_apply_threshold = forms.FloatField(min_value=0, max_value=1)
    task_types = forms.CharField(required=False, help_text="comma or line separated")

    def clean_task_types(self):
        return _lines(self.cleaned_data["task_types"])


class StrategyForm(forms.Form):
    type = forms.ChoiceField(choices=StrategyType.choices, initial=StrategyType.HELPFUL)
    description = forms.CharField(
        max_length=MAX_LESSON_TEXT, widget=forms.Textarea(attrs={"rows": 2})
    )
    context = forms.CharField(
        max_length=MAX_LESSON_PART,
        required=False,
        help_text="when it applies (task types, triggers)",
    )
    confidence = forms.FloatField(min_value=0, max_value=1, initial=0.7)
    save_anyway = forms.BooleanField(
        required=False,
        label="Save anyway",
        help_text="the audit's findings shown above are recorded with the version",
    )


class SkillCreateForm(forms.Form):
    slug = forms.SlugField(max_length=100)
    name = forms.CharField(max_length=200, required=False)
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}), required=False, strip=False
    )


class SkillEditForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 16}), required=False, strip=False
    )
    note = forms.CharField(max_length=2000, required=False)
    save_anyway = forms.BooleanField(
        required=False,
        label="Save anyway",
        help_text="the audit's findings shown above are recorded with the version",
    )


class PolicyForm(forms.Form):
    allowed_tools = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="one per line; empty: any tool not denied",
    )
    denied_tools = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False
    )
    egress_allowlist = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="hosts, or *.suffix",
    )
    sensitive_paths = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False
    )
    protected_branches = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False
    )
    agent_policy = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        required=False,
        max_length=100_000,
        label="Agent policy",
        help_text="the agent's own policy (its system prompt or a policy document): "
        "a lesson that contradicts it gets a block finding only an admin can override",
    )

    def clean(self):
        data = super().clean()
        return {k: (v if k == "agent_policy" else _lines(v)) for k, v in data.items()}


class RolloutPolicyForm(forms.Form):
    """A staged-rollout policy (playbooks.rollout validates the same bounds)."""

    share = forms.FloatField(
        min_value=0.01,
        max_value=0.99,
        initial=0.5,
        help_text="of sessions served the canary",
    )
    min_runs_per_arm = forms.IntegerField(
        min_value=1,
        max_value=1_000_000,
        initial=200,
        label="Minimum runs per cohort",
        help_text="finished runs each cohort needs before a verdict",
    )
    margin = forms.FloatField(
        min_value=0,
        max_value=0.5,
        initial=0.05,
        help_text="success-rate loss still called 'not worse' (0.05 = 5 points)",
    )


class RecallPreviewForm(forms.Form):
    """The task a recall preview is for (the playbook page and the candidate page)."""

    task = forms.CharField(max_length=2000, required=False)
    task_type = forms.CharField(max_length=200, required=False)
    budget_tokens = forms.IntegerField(
        min_value=50, max_value=MAX_BUDGET, required=False, initial=DEFAULT_BUDGET
    )
