"""Behaviour archetypes: the parameters that make customers behave differently.

Each archetype is a frozen bundle of rates read by :mod:`app.simulator.behaviour`.
The numbers are chosen so that segments are separable from behaviour alone:
``loyal_high_value`` buys often and dear, ``bargain_hunter`` searches a lot and
buys cheap, ``browser_never_buys`` never adds to cart, ``cart_abandoner`` fills
carts and rarely pays, ``lapsed`` is only active early in the period, and
``new_visitor`` arrives during the period without an account.

Examples
--------
>>> ARCHETYPES["browser_never_buys"].p_purchase
0.0
>>> round(sum(a.weight for a in ARCHETYPES.values()), 6)
1.0
>>> ARCHETYPES["lapsed"].active_until < 0.5
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Archetype:
    """Rates and preferences of one kind of customer.

    Attributes
    ----------
    name : str
        Identifier written to the ground truth.
    weight : float
        Share of the population.
    sessions_per_day : float
        Mean session starts per day while active.
    active_until : float
        Fraction of the period after which the customer goes silent (1: never).
    arrives : bool
        Whether the customer's first visit falls at a random point of the period
        rather than before it.
    steps_per_session : float
        Mean browsing steps after the landing page.
    step_weights : tuple of float
        Relative odds of page_view, search, product_view and recommendation_click.
    p_add_to_cart : float
        Chance a product view leads to an add to cart.
    p_remove_from_cart : float
        Chance per step of removing a cart line, when the cart has one.
    p_checkout : float
        Chance a session with a non-empty cart starts checkout.
    p_purchase : float
        Chance a started checkout completes.
    price_bias : float
        Price preference within a category (see :meth:`Catalog.pick`).
    max_quantity : int
        Largest quantity of one cart add.
    items_bias : float
        Chance of continuing to shop after an add to cart (bigger baskets).
    p_email_session : float
        Share of sessions that start from a marketing e-mail (email_open).
    p_email_click : float
        Chance an opened e-mail is clicked through.
    p_account : float
        Chance of holding a web account from the start.
    p_register : float
        Chance of opening an account during the period (for those without one).
    p_login : float
        Chance per session of logging in on a device that is not logged in.
    p_loyalty : float
        Chance of being a loyalty-card member.
    p_grant_all : float
        Chance of accepting every purpose on a cookie banner.
    p_consent_change : float
        Chance per session of visiting the preference centre.
    p_withdraw : float
        Chance such a visit withdraws (rather than grants) a purpose.
    category_affinity : dict
        Multipliers of the odds that a category is among the customer's favourites.
    """

    name: str
    weight: float
    sessions_per_day: float
    active_until: float
    arrives: bool
    steps_per_session: float
    step_weights: tuple[float, float, float, float]
    p_add_to_cart: float
    p_remove_from_cart: float
    p_checkout: float
    p_purchase: float
    price_bias: float
    max_quantity: int
    items_bias: float
    p_email_session: float
    p_email_click: float
    p_account: float
    p_register: float
    p_login: float
    p_loyalty: float
    p_grant_all: float
    p_consent_change: float
    p_withdraw: float
    category_affinity: dict[str, float]


ARCHETYPES: Final[dict[str, Archetype]] = {
    a.name: a
    for a in (
        Archetype(
            "loyal_high_value", weight=0.12, sessions_per_day=0.9, active_until=1.0, arrives=False,
            steps_per_session=7, step_weights=(0.2, 0.1, 0.5, 0.2), p_add_to_cart=0.3,
            p_remove_from_cart=0.04, p_checkout=0.9, p_purchase=0.95, price_bias=2.5,
            max_quantity=3, items_bias=0.6, p_email_session=0.25, p_email_click=0.6,
            p_account=0.98, p_register=0.5, p_login=0.9, p_loyalty=0.9, p_grant_all=0.85,
            p_consent_change=0.01, p_withdraw=0.3,
            category_affinity={"fashion": 2.5, "beauty": 2.0, "jewellery": 2.5, "electronics": 1.5},
        ),
        Archetype(
            "bargain_hunter", weight=0.2, sessions_per_day=0.7, active_until=1.0, arrives=False,
            steps_per_session=11, step_weights=(0.15, 0.35, 0.45, 0.05), p_add_to_cart=0.15,
            p_remove_from_cart=0.15, p_checkout=0.55, p_purchase=0.75, price_bias=-3.0,
            max_quantity=2, items_bias=0.3, p_email_session=0.3, p_email_click=0.5,
            p_account=0.7, p_register=0.3, p_login=0.6, p_loyalty=0.5, p_grant_all=0.7,
            p_consent_change=0.02, p_withdraw=0.5,
            category_affinity={"grocery": 2.5, "home": 1.5, "toys": 1.5, "health": 2.0, "pets": 1.5},
        ),
        Archetype(
            "browser_never_buys", weight=0.23, sessions_per_day=0.5, active_until=1.0, arrives=False,
            steps_per_session=9, step_weights=(0.3, 0.15, 0.5, 0.05), p_add_to_cart=0.0,
            p_remove_from_cart=0.0, p_checkout=0.0, p_purchase=0.0, price_bias=0.0,
            max_quantity=1, items_bias=0.0, p_email_session=0.05, p_email_click=0.1,
            p_account=0.3, p_register=0.05, p_login=0.2, p_loyalty=0.1, p_grant_all=0.5,
            p_consent_change=0.03, p_withdraw=0.6,
            category_affinity={"electronics": 2.5, "books": 1.5, "sports": 1.5, "garden": 1.3},
        ),
        Archetype(
            "cart_abandoner", weight=0.15, sessions_per_day=0.6, active_until=1.0, arrives=False,
            steps_per_session=7, step_weights=(0.15, 0.1, 0.65, 0.1), p_add_to_cart=0.45,
            p_remove_from_cart=0.1, p_checkout=0.35, p_purchase=0.06, price_bias=0.5,
            max_quantity=2, items_bias=0.5, p_email_session=0.15, p_email_click=0.35,
            p_account=0.6, p_register=0.2, p_login=0.5, p_loyalty=0.3, p_grant_all=0.6,
            p_consent_change=0.03, p_withdraw=0.5,
            category_affinity={"fashion": 2.0, "electronics": 1.5, "home": 1.5, "beauty": 1.3},
        ),
        Archetype(
            "lapsed", weight=0.13, sessions_per_day=0.7, active_until=0.35, arrives=False,
            steps_per_session=6, step_weights=(0.25, 0.15, 0.5, 0.1), p_add_to_cart=0.15,
            p_remove_from_cart=0.05, p_checkout=0.5, p_purchase=0.8, price_bias=0.0,
            max_quantity=2, items_bias=0.3, p_email_session=0.2, p_email_click=0.2,
            p_account=0.8, p_register=0.2, p_login=0.6, p_loyalty=0.3, p_grant_all=0.6,
            p_consent_change=0.08, p_withdraw=0.8,
            category_affinity={},
        ),
        Archetype(
            "new_visitor", weight=0.17, sessions_per_day=0.4, active_until=1.0, arrives=True,
            steps_per_session=5, step_weights=(0.4, 0.2, 0.35, 0.05), p_add_to_cart=0.08,
            p_remove_from_cart=0.05, p_checkout=0.4, p_purchase=0.6, price_bias=0.0,
            max_quantity=1, items_bias=0.2, p_email_session=0.02, p_email_click=0.2,
            p_account=0.0, p_register=0.35, p_login=0.5, p_loyalty=0.05, p_grant_all=0.55,
            p_consent_change=0.02, p_withdraw=0.4,
            category_affinity={},
        ),
    )
}
