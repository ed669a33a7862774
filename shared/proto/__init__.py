"""Generated from protos/splitexit.proto by `make proto`: the gRPC stubs and the SDK's typed results (splitexit_views); do not edit."""
