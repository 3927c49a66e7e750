"""Progress output: a bar on a terminal, plain lines elsewhere, nothing off the chief."""

import io

from tfbrats.training.progress import BarProgress, PlainProgress, SilentProgress, make_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_display_follows_the_stream():
    assert isinstance(make_progress(10, stream=Terminal()), BarProgress)
    assert isinstance(make_progress(10, stream=io.StringIO()), PlainProgress)
    assert isinstance(make_progress(10, is_chief=False, stream=Terminal()), SilentProgress)


def test_plain_lines_every_n_steps_and_per_epoch():
    lines: list[str] = []
    progress = PlainProgress(10, every=4, write=lines.append)
    for epoch in (1, 2):
        progress.start_epoch(epoch, 2)
        for step in range(1, 11):
            progress.update(step, [("loss", 0.5), ("dice_WT", 0.25)])
        progress.end_epoch([("loss", 0.5)], [("val_dice_WT", 0.75)], seconds=3.4)
    assert len(lines) == 2 * 3  # steps 4 and 8, then the epoch line
    assert lines[2] == "epoch 1/2 done in 3 s: loss 0.5000 val_dice_WT 0.7500"
    assert lines[3] == "epoch 2/2 step 4/10 loss 0.5000 dice_WT 0.2500"
    assert not any("\r" in line or "\x1b" in line or "\n" in line for line in lines)
