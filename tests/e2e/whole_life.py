"""The whole life of an access request through Python stubs over mTLS."""
import sys

import grpc
from lockbox.v1 import access_request_service_pb2 as ar
from lockbox.v1 import access_request_service_pb2_grpc as ar_grpc
from lockbox.v1 import audit_service_pb2 as audit
from lockbox.v1 import audit_service_pb2_grpc as audit_grpc
from lockbox.v1 import grant_service_pb2 as gs
from lockbox.v1 import grant_service_pb2_grpc as gs_grpc
from lockbox.v1 import resources_pb2 as res

target, certs, td = sys.argv[1:4]


def channel(who):
    def read(name):
        with open(f"{certs}/{name}", "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(read("ca.crt"), read(f"{who}.key"), read(f"{who}.crt"))
    return grpc.secure_channel(target, creds)


alice = ar_grpc.AccessRequestServiceStub(channel("alice"))
bob = ar_grpc.AccessRequestServiceStub(channel("bob"))
dana = ar_grpc.AccessRequestServiceStub(channel("dana"))
request = alice.CreateAccessRequest(ar.CreateAccessRequestRequest(
    parent="tenants/contoso",
    access_request=res.AccessRequest(
        environment="tenants/contoso/environments/prod",
        reason=res.AccessRequest.CUSTOMER_INITIATED_SUPPORT,
        support_ticket_id="PY-1", justification="from python")))
assert request.state == res.AccessRequest.PENDING, request
watch = alice.WatchAccessRequest(ar.WatchAccessRequestRequest(name=request.name), timeout=30)
first = next(watch)
assert first.stage == res.AccessRequest.INTERNAL_REVIEW, first
bob.ApproveAccessRequest(ar.ApproveAccessRequestRequest(name=request.name))
dana.ApproveAccessRequest(ar.ApproveAccessRequestRequest(name=request.name))
states = [u.state for u in watch]
assert states[-1] == res.AccessRequest.APPROVED, states
approved = alice.GetAccessRequest(ar.GetAccessRequestRequest(name=request.name))

enforcer = gs_grpc.GrantServiceStub(channel("enforcer"))
check = enforcer.CheckAccess(gs.CheckAccessRequest(
    principal=f"spiffe://{td}/operator/alice", environment="tenants/contoso/environments/prod",
    data_source="sql"))
assert check.allowed and check.grant.name == approved.grant, check
gs_grpc.GrantServiceStub(channel("alice")).ReleaseGrant(gs.ReleaseGrantRequest(name=approved.grant))

try:
    bob.ApproveAccessRequest(ar.ApproveAccessRequestRequest(name=request.name))
    raise AssertionError("a decided request was approved again")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e

log = audit_grpc.AuditServiceStub(channel("dana"))
events = log.ListAuditEvents(audit.ListAuditEventsRequest(
    parent="tenants/contoso", filter=f'access_request = "{request.name}"'))
actions = [e.action for e in events.audit_events]
assert actions == ["access_request.create", "access_request.approve",
                   "access_request.approve", "grant.release"], actions
# A log this young has no checkpoint yet: sign its head, then verify.
log.CreateAuditCheckpoint(audit.CreateAuditCheckpointRequest(parent="tenants/contoso"))
assert log.VerifyAuditLog(audit.VerifyAuditLogRequest(parent="tenants/contoso")).ok
print("whole life through Python stubs: ok")
