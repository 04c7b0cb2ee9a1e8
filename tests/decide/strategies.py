"""Hypothesis strategies for JSON-ish input the gateway does not control (profiles from the cloud)."""

from hypothesis import strategies as st

from edge.decide.catalog import CATEGORIES

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Mostly shaped like real profiles (affinity by category, visits), with anything in the leaves.
profiles = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "affinity": st.dictionaries(st.sampled_from([*CATEGORIES, "cars", ""]), json_values, max_size=10)
            | json_values,
            "visits": json_values,
            "segment": json_values,
        },
    ),
    json_values,
)
