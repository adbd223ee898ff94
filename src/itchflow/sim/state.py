"""The generator's state vector and model constants.

Everything the generator knows lives in numpy arrays; ``g`` holds the scalars, named by the
``G_*`` indices below, so the kernel can stop at any message boundary and resume exactly.
Also: phase kinds, the extras counted per phase, order-flow action indices and the few
probabilities of the market model.
"""

from __future__ import annotations


G_N = 0            # messages wanted
G_K = 1            # stocks (locates 1..K)
G_W = 2            # ticks per price ladder
G_EMITTED = 3
G_DONE = 4
G_PHASE = 5
G_PH_STARTED = 6
G_PH_LEFT = 7      # messages left in the current flow phase
G_T = 8            # clock, ns since midnight
G_MATCH = 9        # last match number used
G_LIVE = 10        # live orders
G_FREE = 11        # head of the free slot list
G_CAP = 12         # order slots of the orders that come and go (resting orders have their own above)
G_TARGET_LIVE = 13
G_CLOSE_ALL = 14
G_PEND = 15        # pending multi-message event: 0 none, 1 sweep, 2 second half of a cross pair
G_PEND_STOCK = 16
G_PEND_SIDE = 17
G_PEND_LEFT = 18
G_PEND_SLOT = 19
G_PEND_Q = 20
G_X_STOCK = 21     # cross phase: stock being crossed
G_X_STAGE = 22
G_X_PRICE = 23     # cross price tick
G_X_SHARES = 24
G_X_LEFT = 25
G_X_SIDE = 26
G_HALT_STOCK = 27
G_HALT_STAGE = 28
G_HALT_DUE = 29
G_NOII_NEXT = 30
G_ADMIN_I = 31
G_MRING_N = 32     # match numbers kept for B
G_NONHEAD = 33     # executions that did not hit the head of the queue (for the summary)
G_RESTING = 34     # live orders that rest all day (live[0:G_RESTING]); D/X/U never pick them
G_REST_N = 35      # resting orders to add over the day (0: none, the default day)
G_REST_I = 36      # resting orders added so far
G_REST_OVER = 37   # messages over which the resting orders are spread (from the first flow message)
G_REF_JUMP = 38    # largest extra step of an order reference jump
G_REF_SPILL = 39   # next reference past every range (used only if a range runs full)
G_EX0 = 40         # extras left in this phase, one per EX_* kind (40..45)
G_REF_JUMP_PPM = 46  # chance of a reference jump, per million
G_REST_FROM = 47   # messages emitted when the resting orders started
G_PEAK_LIVE = 48   # most live orders at any time (for the summary)
G_MAX_REF = 49     # largest order reference handed out (for the summary)
G_REST_CAP = 50    # no resting order is added while this many orders are live (the asked population)
G_REST_SLOT = 51   # next slot for a resting order (from G_CAP up)
G_SIZE = 64

EX_I, EX_L, EX_P, EX_C, EX_B, EX_HALT = 0, 1, 2, 3, 4, 5
N_EXTRA = 6

# Phase kinds.
PH_SYS, PH_ADMIN, PH_FLOW, PH_CROSS, PH_END = 0, 1, 2, 3, 4
# ph_arg bits for flow phases
FL_ALLOW_CROSS = 1
FL_LAST = 2
# flow_p: cumulative probabilities of the order-flow actions
FP_A, FP_F, FP_D, FP_U, FP_X, FP_E = 0, 1, 2, 3, 4, 5
N_FLOW = 6

BUY, SELL = 0, 1
NONHEAD_P = 0.002      # chance an execution takes the order behind the head
FULL_EXEC_P = 0.7      # chance an execution fills the whole order
SWEEP_P = 0.12         # chance an execution event goes on to further orders
SWEEP_MORE = 0.55      # chance a sweep continues after each further order
MRING = 4096
# A kept trade is one int64: its match number in the low MRING_LOCATE_SHIFT bits (10^12
# trades), its stock locate above, so a B can carry the locate of the trade it breaks.
MRING_LOCATE_SHIFT = 40
PREOPEN_CROSS_P = 0.01  # chance a pre-open order is priced through the other side
