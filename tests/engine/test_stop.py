"""Stop signals: SIGTERM stops like Ctrl-C, and both say how to continue."""
import os
import signal
import time

import pytest

from reid.engine.stop import Stopped, stop_signals


def test_sigterm_and_ctrl_c_become_a_stop_with_the_hint():
    with pytest.raises(Stopped) as caught, stop_signals(lambda: "continue with: reid train --resume"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once
    assert caught.value.exit_code == 143
    assert caught.value.message == "terminated (SIGTERM); continue with: reid train --resume"
    with pytest.raises(Stopped) as caught, stop_signals(lambda: "nothing to resume"):
        raise KeyboardInterrupt
    assert (caught.value.exit_code, caught.value.message) == (130, "interrupted; nothing to resume")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
