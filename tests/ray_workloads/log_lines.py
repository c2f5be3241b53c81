"""Prints a token from a task and an actor on a chosen node and from the driver; exits with --exit-code."""

import argparse
import sys

import ray

parser = argparse.ArgumentParser()
parser.add_argument("--token", required=True)
parser.add_argument("--resource", default="")
parser.add_argument("--exit-code", type=int, default=0)
args = parser.parse_args()

ray.init(address="auto")
options = {"resources": {args.resource: 0.01}} if args.resource else {}


@ray.remote
def say(token: str) -> str:
    print(f"task says {token}", flush=True)
    return ray.get_runtime_context().get_node_id()


@ray.remote
class Speaker:
    def speak(self, token: str) -> None:
        print(f"actor says {token}", flush=True)


node_id = ray.get(say.options(**options).remote(args.token))
speaker = Speaker.options(**options).remote()  # on the chosen node too: the head must hold no worker line
ray.get(speaker.speak.remote(args.token))
print(f"driver says {args.token} (task ran on {node_id})", flush=True)
sys.exit(args.exit_code)
