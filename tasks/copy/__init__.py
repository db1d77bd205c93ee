"""The copying task: remember 10 symbols across a long delay.

Hochreiter & Schmidhuber (1997), in the form of Arjovsky, Shah & Bengio (2016):
a sequence of length D + 20 shows 10 symbols drawn from an alphabet of 8, then D - 1
blanks, then a delimiter, then 10 more blanks during which the 10 symbols must be
reproduced in order. Each symbol is recalled exactly D + 10 steps after it was shown.

Inputs are one-hot over {blank, 8 symbols, delimiter}; the readout has 9 classes
{blank, 8 symbols}. The loss is the cross-entropy of the 10 recall steps only: the
blank steps are a fixed function of t and carry no information about memory. A model
with no memory scores ln 8 nats per recalled symbol, which is the usual per-step
baseline 10 ln 8 / (D + 20) over the whole sequence.

With `variable_delay` each sequence draws its own delay d in [min_delay, delay] and is
padded with blanks to length delay + 20; fixed delays can line up with clock periods,
variable ones cannot.

The folder: `sequences` (the layout and `make_batch`), `task` (the adapter, torch-free at
import), `data` (the LightningDataModule, imported when a run needs data).
"""

from tasks.copy.sequences import BLANK, DELIMITER, IGNORE, N_RECALL, N_SYMBOLS, make_batch
from tasks.copy.task import CopyTask

__all__ = ["BLANK", "DELIMITER", "IGNORE", "N_RECALL", "N_SYMBOLS", "CopyTask", "make_batch"]
