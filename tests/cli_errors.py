"""Shared by the command-line tests: run ``soiljax`` in-process and check that it failed as a user error."""

from soiljax.cli import main


def cli_error(argv, capsys) -> str:
    """The error line of ``soiljax ARGV``: exit status 2, one line on stderr, no traceback, plain values."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "np." not in err, err  # plain values, not numpy reprs such as np.float64(nan)
    return err
