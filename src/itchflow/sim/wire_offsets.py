"""Where the generator writes each field: offsets and widths from the ITCH message table.

Every wire offset and width is read from ``itchflow.wire.itch.MESSAGES`` at import, so no
offset is written by hand here (``_o``/``_n``/``_len``); offsets count from the type byte.
"""

from __future__ import annotations

from itchflow.wire.itch import MESSAGES


def _o(code: str, name: str) -> int:
    return MESSAGES[code].field(name).offset


def _n(code: str, name: str) -> int:
    return MESSAGES[code].field(name).size


def _len(code: str) -> int:
    return MESSAGES[code].length


HDR_TYPE = _o("S", "message_type")
HDR_LOCATE, HDR_LOCATE_N = _o("S", "stock_locate"), _n("S", "stock_locate")
HDR_TRACK, HDR_TRACK_N = _o("S", "tracking_number"), _n("S", "tracking_number")
HDR_TS, HDR_TS_N = _o("S", "timestamp"), _n("S", "timestamp")
FRAME = 2  # BinaryFILE length prefix
MAX_FRAMED = FRAME + max(m.length for m in MESSAGES.values())

TY_S, LN_S = ord("S"), _len("S")
S_EVENT = _o("S", "event_code")

TY_A, LN_A = ord("A"), _len("A")
A_REF, A_REF_N = _o("A", "order_reference_number"), _n("A", "order_reference_number")
A_SIDE = _o("A", "buy_sell_indicator")
A_SHARES, A_SHARES_N = _o("A", "shares"), _n("A", "shares")
A_STOCK, A_STOCK_N = _o("A", "stock"), _n("A", "stock")
A_PRICE, A_PRICE_N = _o("A", "price"), _n("A", "price")

TY_F, LN_F = ord("F"), _len("F")
F_REF, F_SIDE, F_SHARES = _o("F", "order_reference_number"), _o("F", "buy_sell_indicator"), _o("F", "shares")
F_STOCK, F_PRICE = _o("F", "stock"), _o("F", "price")
F_ATTR, F_ATTR_N = _o("F", "attribution"), _n("F", "attribution")

TY_E, LN_E = ord("E"), _len("E")
E_REF, E_SHARES = _o("E", "order_reference_number"), _o("E", "executed_shares")
E_SHARES_N = _n("E", "executed_shares")
E_MATCH, E_MATCH_N = _o("E", "match_number"), _n("E", "match_number")

TY_C, LN_C = ord("C"), _len("C")
C_REF, C_SHARES, C_MATCH = _o("C", "order_reference_number"), _o("C", "executed_shares"), _o("C", "match_number")
C_PRINTABLE, C_PRICE = _o("C", "printable"), _o("C", "execution_price")
C_PRICE_N = _n("C", "execution_price")

TY_X, LN_X = ord("X"), _len("X")
X_REF, X_SHARES = _o("X", "order_reference_number"), _o("X", "cancelled_shares")
X_SHARES_N = _n("X", "cancelled_shares")

TY_D, LN_D = ord("D"), _len("D")
D_REF = _o("D", "order_reference_number")

TY_U, LN_U = ord("U"), _len("U")
U_OLD, U_NEW = _o("U", "original_order_reference_number"), _o("U", "new_order_reference_number")
U_REF_N = _n("U", "new_order_reference_number")
U_SHARES, U_SHARES_N = _o("U", "shares"), _n("U", "shares")
U_PRICE, U_PRICE_N = _o("U", "price"), _n("U", "price")

TY_P, LN_P = ord("P"), _len("P")
P_REF, P_SIDE, P_SHARES = _o("P", "order_reference_number"), _o("P", "buy_sell_indicator"), _o("P", "shares")
P_SHARES_N = _n("P", "shares")
P_STOCK, P_PRICE, P_MATCH = _o("P", "stock"), _o("P", "price"), _o("P", "match_number")
P_PRICE_N, P_MATCH_N = _n("P", "price"), _n("P", "match_number")

TY_Q, LN_Q = ord("Q"), _len("Q")
Q_SHARES, Q_SHARES_N = _o("Q", "shares"), _n("Q", "shares")
Q_STOCK, Q_PRICE, Q_PRICE_N = _o("Q", "stock"), _o("Q", "cross_price"), _n("Q", "cross_price")
Q_MATCH, Q_MATCH_N, Q_TYPE = _o("Q", "match_number"), _n("Q", "match_number"), _o("Q", "cross_type")

TY_B, LN_B = ord("B"), _len("B")
B_MATCH, B_MATCH_N = _o("B", "match_number"), _n("B", "match_number")

TY_I, LN_I = ord("I"), _len("I")
I_PAIRED, I_PAIRED_N = _o("I", "paired_shares"), _n("I", "paired_shares")
I_IMB, I_IMB_N = _o("I", "imbalance_shares"), _n("I", "imbalance_shares")
I_DIR, I_STOCK = _o("I", "imbalance_direction"), _o("I", "stock")
I_FAR, I_NEAR, I_REFP = _o("I", "far_price"), _o("I", "near_price"), _o("I", "current_reference_price")
I_PRICE_N = _n("I", "far_price")
I_CROSS, I_VAR = _o("I", "cross_type"), _o("I", "price_variation_indicator")

TY_L, LN_L = ord("L"), _len("L")
L_MPID, L_MPID_N, L_STOCK = _o("L", "mpid"), _n("L", "mpid"), _o("L", "stock")
L_PRIMARY, L_MODE, L_STATE = (_o("L", "primary_market_maker"), _o("L", "market_maker_mode"),
                              _o("L", "market_participant_state"))

TY_H, LN_H = ord("H"), _len("H")
H_STOCK, H_STATE, H_RESERVED = _o("H", "stock"), _o("H", "trading_state"), _o("H", "reserved")
H_REASON, H_REASON_N = _o("H", "reason"), _n("H", "reason")

TY_J, LN_J = ord("J"), _len("J")
J_STOCK, J_REFP = _o("J", "stock"), _o("J", "auction_collar_reference_price")
J_UP, J_LOW = _o("J", "upper_auction_collar_price"), _o("J", "lower_auction_collar_price")
J_PRICE_N = _n("J", "auction_collar_reference_price")
J_EXT, J_EXT_N = _o("J", "auction_collar_extension"), _n("J", "auction_collar_extension")

SYMBOL_N = A_STOCK_N
# Every stock field is the same 8-byte alpha, so one symbol row serves them all.
assert all(MESSAGES[c].field("stock").size == SYMBOL_N for c in "AFPQILHJRY")
assert F_ATTR_N == L_MPID_N
