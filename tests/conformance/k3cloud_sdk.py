#!/usr/bin/env python3
"""Conformance check: the official Kingdee K3Cloud Python SDK against Ferry's simulator.

Usage: python3 k3cloud_sdk.py http://127.0.0.1:PORT/k3cloud/

Needs `pip install kingdee.cdp.webapi.sdk` (8.2.0, import name k3cloud_webapi_sdk). The SDK is
configured in code (InitConfig, no conf.ini) with the fake credentials of the reference's
test vectors, which are the simulator's defaults. It BatchSaves two BD_Customer packages with
the SDK's own signed headers, then reads them back with ExecuteBillQuery. Exit status 0 only
when BatchSave answers IsSuccess=true with one SuccessEntitys entry per package and the query
returns both numbers; 1 otherwise. Not wired into CI.
"""
import json
import sys
import time

from k3cloud_webapi_sdk.main import K3CloudApiSdk

ACCT_ID = "65a0b1c2d3e4f5"
USER_NAME = "apiuser"
APP_ID = "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4"
APP_SECRET = "0123456789abcdef0123456789abcdef"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    server_url = sys.argv[1]
    sdk = K3CloudApiSdk(server_url)
    sdk.InitConfig(ACCT_ID, USER_NAME, APP_ID, APP_SECRET, server_url, lcid=2052, org_num=0)

    suffix = time.strftime("%H%M%S")
    numbers = [f"SDK{suffix}01", f"SDK{suffix}02"]
    packages = [
        {"FCreateOrgId": {"FNumber": 100}, "FUseOrgId": {"FNumber": 100}, "FNumber": numbers[0], "FName": "SDK客户甲"},
        {"FCreateOrgId": {"FNumber": "100"}, "FNumber": numbers[1], "FName": "SDK客户乙"},
    ]
    answer = json.loads(sdk.BatchSave("BD_Customer", {"Model": packages, "IsAutoSubmitAndAudit": "true"}))
    print("BatchSave:", json.dumps(answer, ensure_ascii=False))
    status = answer.get("Result", {}).get("ResponseStatus", {})
    entities = status.get("SuccessEntitys") or []
    saved_ok = status.get("IsSuccess") is True and sorted(e.get("DIndex") for e in entities) == [0, 1]

    query = {"FormId": "BD_Customer", "FieldKeys": "FCUSTID,FNumber,FName",
             "FilterString": f"FNumber LIKE 'SDK{suffix}%'", "OrderString": "FNumber", "StartRow": 0, "Limit": 10}
    rows = json.loads(sdk.ExecuteBillQuery(query))
    print("ExecuteBillQuery:", json.dumps(rows, ensure_ascii=False))
    found = [row[1] for row in rows if isinstance(row, list) and len(row) == 3]
    query_ok = found == numbers

    ok = saved_ok and query_ok
    print("OK" if ok else f"FAILED (BatchSave ok: {saved_ok}, query ok: {query_ok})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
