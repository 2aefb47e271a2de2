#!/usr/bin/python3
"""A command-line client for `moe serve` (Debian's python3-grpcio; run with /usr/bin/python3).

    scripts/client.py generate "Once upon a time" --max-tokens 32          # streams text
    scripts/client.py generate --ids "1 415 22" --max-tokens 8 --json      # one JSON object
    scripts/client.py tokenize "Hello world"
    scripts/client.py detokenize 1 415 22
    scripts/client.py info
    scripts/client.py health

--address (default 127.0.0.1:50051), --api-key KEY, --tls-ca PEM, --timeout SECONDS.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

import moe_grpc  # noqa: E402


def channel(args):
    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(args.address, creds)
    return grpc.insecure_channel(args.address)


def metadata(args):
    return [("authorization", f"Bearer {args.api_key}")] if args.api_key else []


def generate(args, pb, stub):
    req = pb.GenerateRequest(max_tokens=args.max_tokens, temperature=args.temperature,
                             top_k=args.top_k, seed=args.seed, ignore_eos=args.ignore_eos,
                             stop=args.stop or [], request_id=args.request_id or "")
    if args.top_p is not None:
        req.top_p = args.top_p
    if args.logprobs is not None:
        req.logprobs = args.logprobs
    if args.ids is not None:
        req.prompt_token_ids.ids.extend(int(x) for x in args.ids.replace(",", " ").split())
    else:
        req.prompt = args.prompt
    ids, text, last = [], [], None
    if not args.json and args.ids is None:
        print(args.prompt, end="", flush=True)
    for msg in stub.Generate(req, metadata=metadata(args), timeout=args.timeout):
        ids.extend(t.token_id for t in msg.tokens)
        text.append(msg.text)
        if not args.json:
            print(msg.text, end="", flush=True)
        last = msg
    if args.json:
        print(json.dumps({"request_id": last.request_id, "generated_ids": ids, "text": "".join(text),
                          "finish_reason": pb.FinishReason.Name(last.finish_reason),
                          "usage": json_format.MessageToDict(last.usage),
                          "timing": json_format.MessageToDict(last.timing)}))
    else:
        print(f"\n[{pb.FinishReason.Name(last.finish_reason)}, {last.usage.completion_tokens} tokens]",
              file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description="client for moe serve")
    p.add_argument("--address", default="127.0.0.1:50051")
    p.add_argument("--api-key")
    p.add_argument("--tls-ca")
    p.add_argument("--timeout", type=float, default=600)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("prompt", nargs="?", default="")
    g.add_argument("--ids")
    g.add_argument("--max-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--stop", action="append")
    g.add_argument("--logprobs", type=int)
    g.add_argument("--ignore-eos", action="store_true")
    g.add_argument("--request-id")
    g.add_argument("--json", action="store_true")
    t = sub.add_parser("tokenize")
    t.add_argument("text")
    d = sub.add_parser("detokenize")
    d.add_argument("ids", nargs="+", type=int)
    sub.add_parser("info")
    sub.add_parser("health")
    args = p.parse_args()

    pb, grpc_stubs = moe_grpc.inference()
    ch = channel(args)
    stub = grpc_stubs.InferenceServiceStub(ch)
    try:
        if args.cmd == "generate":
            generate(args, pb, stub)
        elif args.cmd == "tokenize":
            print(list(stub.Tokenize(pb.TokenizeRequest(text=args.text), metadata=metadata(args)).ids))
        elif args.cmd == "detokenize":
            print(stub.Detokenize(pb.DetokenizeRequest(ids=args.ids), metadata=metadata(args)).text)
        elif args.cmd == "info":
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata(args))
            print(json.dumps(json_format.MessageToDict(info), indent=1))
        elif args.cmd == "health":
            hpb, hstub = moe_grpc.health()
            r = hstub.HealthStub(ch).Check(hpb.HealthCheckRequest(service=""), timeout=args.timeout)
            print(hpb.HealthCheckResponse.ServingStatus.Name(r.status))
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
