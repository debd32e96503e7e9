import httpx, json
from tests.api_clients import sign_up

def test_scratch(torture_stack, start_service):
    svc = start_service()
    torture_stack.configure_webhook(f"{svc.url}/webhooks/messages")
    user = sign_up(torture_stack)
    api = user.api(svc.url)
    conv = api.post("/api/conversations", json={"title": "x"}).json()["id"]
    cases = {
        "nul": json.dumps({"message": "a\x00b"}).encode(),
        "surrogate": json.dumps({"message": "a\ud800b"}).encode(),
        "deep": b"[" * 5000,
        "deep_obj": b'{"message":' + b"[" * 5000,
        "nan": b'{"message": NaN}',
        "big_int": b'{"message": "x", "client_message_id": ' + b"9" * 5000 + b"}",
    }
    for name, body in cases.items():
        r = api.post(f"/api/chat/{conv}", content=body, headers={"content-type": "application/json"})
        print("chat", name, r.status_code, r.text[:200])
    for name, body in {"title_nul": json.dumps({"title": "a\x00"}).encode(), "title_sur": json.dumps({"title": "\udc00"}).encode(),
                       "deep": b"[" * 5000, "model_nul": json.dumps({"model": "\x00"}).encode()}.items():
        r = api.post("/api/conversations", content=body, headers={"content-type": "application/json"})
        print("conv", name, r.status_code, r.text[:200])
    for path in ["/api/conversations?limit=" + "9"*5000, "/api/conversations?before=%00", f"/api/chat/{conv}/history?limit=1e3"]:
        r = api.get(path); print("get", path[:60], r.status_code, r.text[:150])
