"""The export as a page a shopper can read: what the store holds, and why each offer was chosen.

Jinja2 with autoescaping on: every value (an offer's title, a device's reason) is text, never markup. One
self-contained page: no script, no external asset, so it opens from a file or an app's web view alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import jinja2

_TEMPLATE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>What {{ doc.store_id }} holds about you</title>
<style>
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%}td,th{padding:.25rem .5rem;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}.muted{color:#666}.yes{color:#075}.no{color:#a00}
</style></head><body>
<h1>What store {{ doc.store_id }} holds about you</h1>
<p class="muted">Prepared {{ doc.generated_at }} (UTC) for shopper {{ doc.shopper_id }}.{% if doc.last_seen_at %}
This store last noted your visit {{ doc.last_seen_at }}.{% endif %}</p>
{% if doc.erased_at %}<p><strong>You asked to be forgotten on {{ doc.erased_at }}.</strong> The store keeps no
data linked to you since then, only a one-way code that stops old copies from coming back.</p>{% endif %}

<h2>Your choices</h2>
{% if doc.consents %}<table><tr><th>What</th><th>Your choice</th><th>Since</th><th>Where</th></tr>
{% for c in doc.consents %}<tr><td>{{ c.meaning or c.purpose }}</td>
<td class="{{ 'yes' if c.granted else 'no' }}">{{ 'allowed' if c.granted else 'not allowed' }}</td>
<td>{{ c.at }}</td><td>{{ c.source }}</td></tr>{% endfor %}</table>
{% else %}<p>The store holds no choice of yours: it treats you as a shopper it does not know.</p>{% endif %}

<h2>Your profile</h2>
{% if doc.profile %}<p>Received from the retailer {{ doc.profile.received_at }}; deleted when
{{ doc.profile.deleted_when }}.</p><table>{% for k, v in doc.profile.fields | dictsort %}
<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
{% else %}<p>No profile is held.</p>{% endif %}
{% if doc.beacon_key %}<p>{{ doc.beacon_key.meaning }}.</p>{% endif %}

<h2>Where you are</h2>
<p>{{ doc.signals.meaning }}</p>
{% if doc.signals.now %}<ul>{% for p in doc.signals.now %}<li>{{ p.zone }} ({{ p.source }})</li>
{% endfor %}</ul>{% endif %}

<h2>Why did I see this offer?</h2>
{% if doc.decisions %}{% for d in doc.decisions %}<h3>{{ d.offer or d.offer_id or 'the store\\'s own content' }}
<span class="muted">{{ d.at }}, screen {{ d.display_id }} in {{ d.zone }}</span></h3>
<p>{% if d.holdout %}You are in the comparison group: you saw the store's usual content, so the retailer can
measure what personal offers change.{% elif d.explored %}Chosen at random among the offers allowed here (this is
how the store learns what works).{% elif d.personalized %}Chosen for you by model {{ d.model_version }}.
{% else %}Chosen for everyone near the screen, not for you, by model {{ d.model_version }}.{% endif %}
{% if d.why %} What weighed most:</p><ul>{% for c in d.why[:3] %}<li>{{ c.label }}
({{ 'for' if c.logit > 0 else 'against' }}, {{ '%+.2f' | format(c.logit) }})</li>{% endfor %}</ul>
{% else %}</p>{% endif %}<p class="muted">Deleted by {{ d.deleted_by }}.</p>{% endfor %}
{% else %}<p>No offer was chosen for you that the store kept linked to you.</p>{% endif %}

<h2>Offers you were shown</h2>
{% if doc.exposures %}<ul>{% for e in doc.exposures %}<li>{{ e.offer_id or 'store content' }} on {{ e.display_id }},
{{ e.shown_at }} <span class="muted">(deleted by {{ e.deleted_by }})</span></li>{% endfor %}</ul>
{% else %}<p>None kept linked to you.</p>{% endif %}

<h2>Fitting rooms and devices set for you</h2>
{% if doc.device_settings %}<ul>{% for s in doc.device_settings %}<li>{{ s.device_id }}: {{ s.applied }}
({{ s.reason }}), {{ s.at }}</li>{% endfor %}</ul>{% else %}<p>None.</p>{% endif %}

<h2>Staff who helped you</h2>
{% if doc.staff_interactions %}<ul>{% for s in doc.staff_interactions %}<li>{{ s.team }} team, {{ s.action }},
{{ s.zone }}, {{ s.at }}</li>{% endfor %}</ul>{% else %}<p>None kept.</p>{% endif %}

<h2>Orders to collect</h2>
{% if doc.pickup_orders %}<ul>{% for o in doc.pickup_orders %}<li>{{ o.reference }} at {{ o.counter }}
{% if o.collected_at %}(collected {{ o.collected_at }}){% else %}(ready since {{ o.ready_at }}){% endif %}</li>
{% endfor %}</ul>{% else %}<p>None.</p>{% endif %}

<h2>Purchases kept to measure offers</h2>
{% if doc.purchases %}<ul>{% for c in doc.purchases %}<li>{{ c.at }}, till {{ c.lane }}: {{ c.total }}
{{ c.currency or '' }} ({% for i in c["items"] %}{{ i.qty }} x {{ i.sku }}{% if not loop.last %}, {% endif %}{% endfor %})
{% if c.deleted_by %}<span class="muted">(deleted by {{ c.deleted_by }})</span>{% endif %}</li>{% endfor %}</ul>
{% else %}<p>None kept linked to you.</p>{% endif %}

<h2>What the store sends to the retailer</h2>
<p>{{ doc.sent_to_cloud.meaning }}.</p>
{% if doc.sent_to_cloud.waiting %}<ul>{% for e in doc.sent_to_cloud.waiting %}<li>{{ e.kind }}, {{ e.at }}</li>
{% endfor %}</ul>{% else %}<p>Nothing is waiting.</p>{% endif %}

<h2>Earlier copies of this page</h2>
{% if doc.exports %}<ul>{% for a in doc.exports %}<li>{{ a.at }} ({{ a.via }})</li>{% endfor %}</ul>
{% else %}<p>This is the first.</p>{% endif %}
{% if doc.truncated %}<p class="muted">Only the newest records of some kinds are listed here:
{% for k, n in doc.truncated | dictsort %}{{ n }} more {{ k }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
{% endif %}
</body></html>
"""

_ENV: Final = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
_PAGE: Final = _ENV.from_string(_TEMPLATE)


def render_html(doc: Mapping[str, Any]) -> str:
    """The export (``build_export``'s dict) as one HTML page."""
    return _PAGE.render(doc=doc)
