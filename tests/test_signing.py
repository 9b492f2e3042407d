"""The signer against the published known answers and the official SDKs' own signers.

The client and the emulator share ``bulk_attach.api.signing``, so a symmetric bug would pass
every end-to-end test. Only outside references can catch it: the two answers printed in
Alibaba's docs, ``aliyun-python-sdk-core``'s V1 composer, and ``alibabacloud-tea-openapi``'s
V1 and V3 signers.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import aliyunsdkcore.auth.composer.rpc_signature_composer as core_composer  # type: ignore[import-untyped]
import pytest
from alibabacloud_tea_openapi.utils import Utils as TeaUtils  # type: ignore[import-untyped]
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bulk_attach.api.signing import (
    V3_ALGORITHM,
    canonical_query,
    parse_v3_authorization,
    percent_encode,
    sign_v1,
    v1_signature,
    v1_string_to_sign,
    v3_authorization,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)

# Module-level names starting with "__" are not mangled; getattr reaches them.
core_string_to_sign: Any = getattr(core_composer, "__compose_string_to_sign")
core_signature: Any = getattr(core_composer, "__get_signature")

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# --- published known answers ------------------------------------------------------------

V1_DOC_PARAMS = {
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "Format": "XML",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0",
    "Timestamp": "2016-02-23T12:46:24Z",
    "Version": "2014-05-26",
}


def test_v1_known_answer_from_the_docs() -> None:
    assert sign_v1("GET", V1_DOC_PARAMS, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_v1_docs_second_value_belongs_to_the_misspelled_timestamp() -> None:
    params = dict(V1_DOC_PARAMS)
    params["TimeStamp"] = params.pop("Timestamp")
    assert sign_v1("GET", params, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="


def test_v1_signature_parameter_is_never_signed() -> None:
    with_signature = {**V1_DOC_PARAMS, "Signature": "anything"}
    assert sign_v1("GET", with_signature, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


V3_DOC_QUERY = {
    "ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
    "RegionId": "cn-shanghai",
}
V3_DOC_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-content-sha256": EMPTY_SHA256,
    "x-acs-date": "2023-10-26T09:01:01Z",
    "x-acs-signature-nonce": "d410180a5abf7fe235dd9b74aca91fc0",
    "x-acs-version": "2014-05-26",
}
V3_DOC_SIGNATURE = "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"


def test_v3_known_answer_from_the_docs() -> None:
    request, signed = v3_canonical_request("POST", "/", V3_DOC_QUERY, V3_DOC_HEADERS, EMPTY_SHA256)
    assert (
        signed
        == "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    )
    signature = v3_signature("YourAccessKeySecret", v3_string_to_sign(request))
    assert signature == V3_DOC_SIGNATURE
    header = v3_authorization(
        "YourAccessKeyId",
        "YourAccessKeySecret",
        "POST",
        "/",
        V3_DOC_QUERY,
        V3_DOC_HEADERS,
        EMPTY_SHA256,
    )
    assert header == (
        f"{V3_ALGORITHM} Credential=YourAccessKeyId,SignedHeaders={signed},"
        f"Signature={V3_DOC_SIGNATURE}"
    )


def test_v3_header_names_are_lower_cased_and_values_trimmed() -> None:
    shouting = {name.upper(): f"  {value} " for name, value in V3_DOC_HEADERS.items()}
    request, _ = v3_canonical_request("POST", "/", V3_DOC_QUERY, shouting, EMPTY_SHA256)
    assert v3_signature("YourAccessKeySecret", v3_string_to_sign(request)) == V3_DOC_SIGNATURE


# --- encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (" ", "%20"),
        ("*", "%2A"),
        ("~", "~"),
        ("+", "%2B"),
        ("/", "%2F"),
        ("=", "%3D"),
        ("&", "%26"),
        ("%", "%25"),
        ("-_.", "-_."),
        ("é", "%C3%A9"),
        ("中", "%E4%B8%AD"),
    ],
)
def test_percent_encode_rfc3986(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


def test_canonical_query_sorts_by_name_and_keeps_blank_values() -> None:
    assert canonical_query({"b": "", "a": "x y", "B": "1"}) == "B=1&a=x%20y&b="


# --- against the official signers --------------------------------------------------------

# Everything that tends to break encoders: unicode (no lone surrogates: they are not UTF-8),
# spaces and the characters RFC 3986 and form encoding disagree on.
_TRICKY = st.sampled_from(list(" *~+/=&%?#:;,'\"!$()[]@\\\t\n"))
_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
_VALUE = st.one_of(
    _TEXT,
    st.lists(st.one_of(_TRICKY, st.characters(exclude_categories=["Cs"])), max_size=20).map(
        "".join
    ),
    st.just(""),
    st.text(alphabet="ab *~+", min_size=500, max_size=2000),
)
_V1_NAME = st.one_of(_TEXT, _TRICKY).filter(lambda name: name != "Signature")
_V1_PARAMS = st.dictionaries(_V1_NAME, _VALUE, max_size=12)
_METHOD = st.sampled_from(["GET", "POST"])
_SECRET = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(method=_METHOD, params=_V1_PARAMS, secret=_SECRET)
@example(method="GET", params=V1_DOC_PARAMS, secret="testsecret")
@example(method="POST", params={"k": "a b*c~d+e/f=g&h%i", "": "", "中": "值"}, secret="s&")
def test_v1_matches_aliyun_python_sdk_core(
    method: str, params: dict[str, str], secret: str
) -> None:
    ours = v1_string_to_sign(method, params)
    assert ours == core_string_to_sign(method, dict(params))
    assert v1_signature(secret, ours) == core_signature(ours, secret)
    # And the tea SDK's V1 (its Config(signature_algorithm="v2") path) agrees too.
    assert sign_v1(method, params, secret) == TeaUtils.get_rpcsignature(
        dict(params), method, secret
    )


# tea's V3 canonical query percent-encodes values but NOT names, so the names here are ASCII
# letters and digits (as every real ECS parameter name is); values are anything.
_V3_NAME = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    min_size=1,
    max_size=20,
)
_HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_HEADERS = st.fixed_dictionaries(
    {
        "host": st.sampled_from(["ecs.cn-hangzhou.aliyuncs.com", "127.0.0.1:8080"]),
        "x-acs-action": st.sampled_from(["AttachClassicLinkVpc", "DescribeInstances"]),
        "x-acs-version": st.just("2014-05-26"),
        "x-acs-date": st.just("2024-01-02T03:04:05Z"),
        "x-acs-signature-nonce": st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
        "x-acs-content-sha256": st.just(EMPTY_SHA256),
    },
    optional={"x-acs-security-token": _HEADER_VALUE, "x-acs-accesskey-id": _HEADER_VALUE},
)


@settings(max_examples=300, deadline=None)
@given(
    method=_METHOD,
    query=st.dictionaries(_V3_NAME, _VALUE, max_size=10),
    headers=_HEADERS,
    body=st.binary(max_size=64),
    secret=_SECRET,
)
def test_v3_matches_tea_openapi(
    method: str, query: dict[str, str], headers: dict[str, str], body: bytes, secret: str
) -> None:
    payload = hashlib.sha256(body).hexdigest()
    request = SimpleNamespace(method=method, pathname="/", query=dict(query), headers=dict(headers))
    theirs = TeaUtils.get_authorization(request, V3_ALGORITHM, payload, "AKID", secret)
    ours = v3_authorization("AKID", secret, method, "/", query, headers, payload)
    assert ours == theirs


# --- the Authorization header, as a server reads it ------------------------------------

_AK = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    min_size=1,
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@given(ak=_AK, headers=_HEADERS, query=st.dictionaries(_V3_NAME, _VALUE, max_size=4))
def test_parse_v3_authorization_round_trip(
    ak: str, headers: dict[str, str], query: dict[str, str]
) -> None:
    header = v3_authorization(ak, "secret", "POST", "/", query, headers, EMPTY_SHA256)
    parsed = parse_v3_authorization(header)
    assert parsed is not None
    request, signed = v3_canonical_request("POST", "/", query, headers, EMPTY_SHA256)
    assert parsed.access_key_id == ak
    assert parsed.signed_headers == tuple(signed.split(";"))
    assert parsed.signed_headers == tuple(sorted(headers))
    assert parsed.signature == v3_signature("secret", v3_string_to_sign(request))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ACS3-HMAC-SHA1 Credential=a,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders,Signature=00",
        "Bearer token",
    ],
)
def test_parse_v3_authorization_rejects_malformed(value: str) -> None:
    assert parse_v3_authorization(value) is None
