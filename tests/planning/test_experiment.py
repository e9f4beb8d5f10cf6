"""The planning report: each controller's gain as a fraction of the oracle's, shown in the table."""

from ivideogpt.planning.experiment import format_table, gain_vs_oracle


def summary(gain: float) -> dict[str, float]:
    return {"coverage_gain": gain, "success_rate": 0.0}


def test_gain_vs_oracle_is_a_fraction_of_the_oracles_gain() -> None:
    ratios = gain_vs_oracle({"oracle": summary(0.6), "world-model": summary(0.3), "random": summary(-0.1)})
    assert ratios == {"world-model": 0.5, "random": -0.1 / 0.6}


def test_no_ratio_without_an_oracle_that_gains() -> None:
    assert gain_vs_oracle({"world-model": summary(0.3)}) == {}
    assert gain_vs_oracle({"oracle": summary(0.0), "world-model": summary(0.3)}) == {}


def test_table_shows_the_ratio() -> None:
    report = {"summary": {"oracle": summary(0.6), "world-model": summary(0.3)},
              "gain_vs_oracle": {"world-model": 0.5}}
    table = format_table(report)
    assert "gain_vs_oracle" in table.splitlines()[0] and "50%" in table.splitlines()[2]
