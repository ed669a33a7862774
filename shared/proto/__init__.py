"""Generated gRPC stubs of protos/splitexit.proto (`make proto`); do not edit."""
