"""The limits of the reference profile store, each with the reason for its value (docs/sync-openapi.yaml)."""

from __future__ import annotations

from typing import Final

# A pushed batch, decoded: large enough for 1,000 events of ~1 KB, small enough to hold in memory per request.
MAX_BODY_BYTES: Final = 1024 * 1024
# What may cross the socket: the decoded cap plus room for gzip's framing of incompressible data.
MAX_WIRE_BYTES: Final = MAX_BODY_BYTES + 64 * 1024
# Events in one push; with MAX_BODY_BYTES it bounds one transaction's work.
MAX_EVENTS: Final = 1000
# Changes (and stored events) per page: the contract's range and default.
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 500
# A page also stops once its changes' data add up to this much, so a page of large offers stays small;
# it always holds at least one change.
PAGE_BUDGET_BYTES: Final = 1024 * 1024
# Nesting of free JSON (profiles, event data, offer data): real documents are a few levels deep; the cap
# keeps every walk over them cheap and far from Python's recursion limit.
MAX_JSON_DEPTH: Final = 32
# A profile or an offer, encoded: profiles are ~1 KB; the cap keeps a page of changes bounded.
MAX_DOCUMENT_BYTES: Final = 64 * 1024
# Integers in free JSON: what every JSON parser and both databases' JSON handle exactly.
MAX_JSON_INT: Final = 2**63 - 1
# A consent dated further ahead than NTP-level skew would outrank every later withdrawal under "latest wins"
# (the gateway refuses them too: edge.identity.consent.MAX_GRANT_AHEAD_S).
MAX_CONSENT_AHEAD_S: Final = 300.0
# Store tokens: RFC 6750 b64token characters; 16 is a floor against guessable tokens, 512 a sanity cap.
MIN_TOKEN_CHARS: Final = 16
MAX_TOKEN_CHARS: Final = 512
# An Ed25519 public key PEM is ~113 bytes; more is a mistake (a chain, a private key, a whole file).
MAX_PEM_CHARS: Final = 4096
# Free-text fields (consent source, event kind).
MAX_LABEL_CHARS: Final = 64
# A pickup order's reference and counter are shown on a store's screen as they are: what fits one line
# ("A-1042", "Click & collect desk, ground floor"); the gateway refuses longer ones too.
MAX_ORDER_REFERENCE_CHARS: Final = 32
MAX_ORDER_COUNTER_CHARS: Final = 64
# How long a store holds a shopper it saw (an event it pushed names them) or fetched (a cache miss) and who
# is not its home shopper, unless seen again (issue 15): a month covers a regular's visits; the CLI's
# --member-days changes it.
DEFAULT_MEMBER_DAYS: Final = 30
MAX_MEMBER_DAYS: Final = 3650
# A store's pushes renew a membership at most once an hour: a busy store names the same shoppers in many
# events, and each renewal is a write under the change-log lock; an hour is nothing against a month.
MEMBER_REFRESH_S: Final = 3600.0
# Lapsed memberships a pull lets go of before it reads (each is a few deletes under the change-log lock):
# bounds the extra work of one pull; a day's lapses of a large store are spread over its next pulls.
LAPSES_PER_PULL: Final = 200
# Seconds a stopping server waits for requests in flight.
SHUTDOWN_TIMEOUT_S: Final = 5.0
# Online and offline together (issue 16). Lines of one posted sale: a large basket is ~100 lines; 500 keeps one
# sale's insert (and a page of the report's join over its lines) bounded.
MAX_SALE_LINES: Final = 500
# SKUs a campaign exposure names: as many as an offer may (storecontract.offers.Offer.skus), each as long.
MAX_CAMPAIGN_SKUS: Final = 64
MAX_SKU_CHARS: Final = 64
# A sale or campaign exposure dated further ahead of the server's clock than NTP-level skew is a wrong clock
# (the shop's, the campaign tool's): refused, never attributed to anything.
MAX_POSTED_AHEAD_S: Final = 300.0
# A sale is attributed to a touch at most this long before it (the report's --attribution-days): two weeks
# covers a considered purchase after an offer or a campaign; the gateway's own window has the same default.
DEFAULT_ATTRIBUTION_DAYS: Final = 14
MAX_ATTRIBUTION_DAYS: Final = 365
# Money: a sale's total and a line's price, as any till or shop could send (and float64 holds exactly to cents).
MAX_AMOUNT: Final = 1e9
