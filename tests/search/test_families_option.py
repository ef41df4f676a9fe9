"""--families: the CLI's names match the spaces' families, and the default follows --model."""

from edgeshrink.search.options import FAMILY_NAMES, SearchOptions, families_of
from edgeshrink.spaces.families import FAMILIES


def test_cli_family_names_are_the_spaces_families() -> None:
    assert set(FAMILY_NAMES) == set(FAMILIES)


def test_default_families_follow_model() -> None:
    assert families_of(SearchOptions()) == ("student",)
    assert families_of(SearchOptions(model="resnet18:w.pt")) == ("base", "student")
    assert families_of(SearchOptions(model="m:f", families=("base", "base"))) == ("base",)
