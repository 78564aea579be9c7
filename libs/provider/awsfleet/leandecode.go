package awsfleet

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/aws/smithy-go/tracing"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Lean decoders for the EC2 answers the adapter reads most (DescribeInstances pages and
// look-ups by id, DescribeSnapshots, DescribeInstanceStatus) and for the one it receives most
// (CreateSnapshots, one call per instance). The SDK's XML deserializer
// (encoding/xml tokens wrapped by smithy's node decoder, a copy of every value) was half or
// more of the adapter's client-side CPU; these fill the SDK's own output types from the body
// with xmlReader, and fall back to the SDK's decoder on anything unexpected:
//
//   - an element the SDK knows but we do not decode (say an instance's licenseSet): the body
//     goes to the SDK's decoder, so every field is still filled;
//   - an element neither knows, inside a structure of which we decode every member the SDK
//     does ("complete" below): skipped, as the SDK skips it;
//   - a value the SDK would fail on, or XML outside xmlReader's subset: the SDK's decoder
//     then decodes it or fails with its own error.
//
// Error answers (non-2xx) always go to the SDK's decoder, so error codes and messages are the
// SDK's. The TestLeanDecoders* tests check the outputs deeply equal for cloudsim's answers and
// for bodies shaped like AWS's documented ones, and that the SDK's types have no member the
// decoders do not know; FuzzLeanDecoders that random bodies either match or fall back.

// leanEC2Decoders is the stack option that puts a lean decoder in place of the SDK's for the
// operations that have one (tests compare it with the SDK's decoders).
func leanEC2Decoders(stack *middleware.Stack) error { return ec2Decoders(stack, false) }

// adapterEC2Decoders is the adapter's EC2 clients' stack option: leanEC2Decoders, but
// CreateSnapshots' answer is dropped unread. The adapter never reads it (the look after
// creating reads the sets), and one CreateSnapshots per instance is most of a wave's calls.
func adapterEC2Decoders(stack *middleware.Stack) error { return ec2Decoders(stack, true) }

func ec2Decoders(stack *middleware.Stack, dropCreateSnapshots bool) error {
	m := &leanDeserializer{}
	switch stack.ID() {
	case "DescribeInstances":
		m.decode = func(r *xmlReader) any { return decodeDescribeInstances(r) }
	case "DescribeSnapshots":
		m.decode = func(r *xmlReader) any { return decodeDescribeSnapshots(r) }
	case "DescribeInstanceStatus":
		m.decode = func(r *xmlReader) any { return decodeDescribeInstanceStatus(r) }
	case "CreateSnapshots":
		m.decode = func(r *xmlReader) any { return decodeCreateSnapshots(r) }
		if dropCreateSnapshots {
			m.drop = func() any { return &ec2.CreateSnapshotsOutput{} }
		}
	default:
		return nil
	}
	sdk, ok := stack.Deserialize.Get("OperationDeserializer")
	if !ok {
		return nil
	}
	m.sdk = sdk
	_, err := stack.Deserialize.Swap("OperationDeserializer", m)
	return err
}

// leanDeserializer decodes a successful answer with decode, and hands every other answer (or
// one decode gave up on) to the SDK's deserializer, replaying the response to it. With drop
// set, a successful answer is read to its end (so the connection is kept) and not decoded: the
// output is drop's empty one, as the SDK's decoder makes it of an empty body.
type leanDeserializer struct {
	sdk    middleware.DeserializeMiddleware
	decode func(r *xmlReader) any
	drop   func() any
}

// ID keeps the SDK's id, so middlewares placed relative to it stay where they were.
func (*leanDeserializer) ID() string { return "OperationDeserializer" }

func (m *leanDeserializer) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleDeserialize(ctx, in)
	resp, ok := out.RawResponse.(*smithyhttp.Response)
	if err != nil || !ok || resp.StatusCode < 200 || resp.StatusCode >= 300 || resp.Body == nil {
		return m.sdk.HandleDeserialize(ctx, in, replay{out: out, md: md, err: err})
	}
	if m.drop != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		smithyhttp.CloseResponseBody(ctx, resp, false, nil)
		out.Result = m.drop()
		return out, md, nil
	}
	buf := getBodyBuffer(resp.ContentLength)
	defer putBodyBuffer(buf)
	_, rerr := buf.ReadFrom(resp.Body)
	if rerr == nil {
		_, span := tracing.StartSpan(ctx, "OperationDeserializer")
		r := xmlReader{b: buf.Bytes()}
		result := m.decode(&r)
		span.End()
		if !r.bad {
			smithyhttp.CloseResponseBody(ctx, resp, false, nil)
			out.Result = result
			return out, md, nil
		}
	}
	// The SDK's decoder reads what we read (and then the read error, if any) and closes the
	// original body.
	resp.Body = replayBody{Reader: io.MultiReader(bytes.NewReader(buf.Bytes()), errReader{rerr}), orig: resp.Body}
	return m.sdk.HandleDeserialize(ctx, in, replay{out: out, md: md})
}

// replay is the next handler the SDK's deserializer is given: the response already received.
type replay struct {
	out middleware.DeserializeOutput
	md  middleware.Metadata
	err error
}

func (r replay) HandleDeserialize(context.Context, middleware.DeserializeInput) (middleware.DeserializeOutput, middleware.Metadata, error) {
	return r.out, r.md, r.err
}

type replayBody struct {
	io.Reader
	orig io.ReadCloser
}

func (b replayBody) Close() error { return b.orig.Close() }

// errReader returns err, or io.EOF when err is nil.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

// Body buffers are reused: a DescribeInstances page of 1,000 instances is about 1.5 MB, and
// growing a fresh buffer for each was a good part of the allocations. Decoded values are
// copies, so nothing refers to a buffer once its call is decoded.
var bodyBuffers sync.Pool

// maxPooledBody is the largest buffer kept for reuse.
const maxPooledBody = 8 << 20

func getBodyBuffer(contentLength int64) *bytes.Buffer {
	buf, _ := bodyBuffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	if contentLength > 0 && contentLength <= maxPooledBody {
		buf.Grow(int(contentLength) + bytes.MinRead)
	}
	return buf
}

func putBodyBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBody {
		return
	}
	buf.Reset()
	bodyBuffers.Put(buf)
}

// decodeRoot reads the root element and decodes its children with field; a body the reader
// does not handle leaves it bad.
func decodeRoot(r *xmlReader, field func(name []byte)) {
	if !r.root() {
		r.bad = true
		return
	}
	root := r.name
	for r.child(root) {
		field(r.name)
	}
}

// Every decode* function below mirrors the SDK's awsEc2query_deserializeDocument* function of
// the same shape: element names matched without regard to case, a list present but empty is
// an empty (not nil) slice, a repeated list element appends, a repeated structure element
// fills the same structure. "complete" marks a shape of which we decode every member the SDK
// does, so an unknown element is skipped as the SDK skips it; in the others an element we do
// not decode makes the reader bad, and the SDK decodes the body.

func decodeDescribeSnapshots(r *xmlReader) *ec2.DescribeSnapshotsOutput {
	out := &ec2.DescribeSnapshotsOutput{}
	decodeRoot(r, func(name []byte) { // complete
		switch string(r.lower) {
		case "nexttoken":
			out.NextToken = r.str(name)
		case "snapshotset":
			if out.Snapshots == nil {
				out.Snapshots = make([]ec2types.Snapshot, 0)
			}
			for r.child(name) {
				if string(r.lower) != "item" {
					r.skip(r.name)
					continue
				}
				var s ec2types.Snapshot
				decodeSnapshot(r, r.name, &s)
				out.Snapshots = append(out.Snapshots, s)
			}
		default:
			r.skip(name)
		}
	})
	return out
}

// decodeCreateSnapshots decodes CreateSnapshots' answer: the snapshots started, one per volume.
// An empty body is an empty output, as the SDK's decoder makes it (its XML decoder meets the
// end of the body before a root element).
func decodeCreateSnapshots(r *xmlReader) *ec2.CreateSnapshotsOutput {
	out := &ec2.CreateSnapshotsOutput{}
	if len(r.b) == 0 {
		return out
	}
	decodeRoot(r, func(name []byte) { // complete
		if string(r.lower) != "snapshotset" {
			r.skip(name)
			return
		}
		if out.Snapshots == nil {
			out.Snapshots = make([]ec2types.SnapshotInfo, 0, 2)
		}
		for r.child(name) {
			if string(r.lower) != "item" {
				r.skip(r.name)
				continue
			}
			var s ec2types.SnapshotInfo
			decodeSnapshotInfo(r, r.name, &s)
			out.Snapshots = append(out.Snapshots, s)
		}
	})
	return out
}

func decodeSnapshotInfo(r *xmlReader, parent []byte, s *ec2types.SnapshotInfo) { // complete
	for r.child(parent) {
		name := r.name
		switch string(r.lower) {
		case "availabilityzone":
			s.AvailabilityZone = r.common(name)
		case "description":
			s.Description = r.str(name)
		case "encrypted":
			s.Encrypted = r.bool(name)
		case "outpostarn":
			s.OutpostArn = r.common(name)
		case "ownerid":
			s.OwnerId = r.common(name)
		case "progress":
			s.Progress = r.common(name)
		case "snapshotid":
			s.SnapshotId = r.str(name)
		case "ssetype":
			s.SseType = ec2types.SSEType(r.text(name))
		case "starttime":
			s.StartTime = r.time(name)
		case "state":
			s.State = ec2types.SnapshotState(r.text(name))
		case "tagset":
			decodeTags(r, name, &s.Tags)
		case "volumeid":
			s.VolumeId = r.str(name)
		case "volumesize":
			s.VolumeSize = r.int32(name)
		default:
			r.skip(name)
		}
	}
}

func decodeSnapshot(r *xmlReader, parent []byte, s *ec2types.Snapshot) { // complete
	for r.child(parent) {
		name := r.name
		switch string(r.lower) {
		case "availabilityzone":
			s.AvailabilityZone = r.common(name)
		case "completiondurationminutes":
			s.CompletionDurationMinutes = r.int32(name)
		case "completiontime":
			s.CompletionTime = r.time(name)
		case "dataencryptionkeyid":
			s.DataEncryptionKeyId = r.str(name)
		case "description":
			s.Description = r.str(name)
		case "encrypted":
			s.Encrypted = r.bool(name)
		case "fullsnapshotsizeinbytes":
			s.FullSnapshotSizeInBytes = r.int64(name)
		case "kmskeyid":
			s.KmsKeyId = r.common(name)
		case "outpostarn":
			s.OutpostArn = r.common(name)
		case "owneralias":
			s.OwnerAlias = r.common(name)
		case "ownerid":
			s.OwnerId = r.common(name)
		case "progress":
			s.Progress = r.common(name)
		case "restoreexpirytime":
			s.RestoreExpiryTime = r.time(name)
		case "snapshotid":
			s.SnapshotId = r.str(name)
		case "ssetype":
			s.SseType = ec2types.SSEType(r.text(name))
		case "starttime":
			s.StartTime = r.time(name)
		case "status":
			s.State = ec2types.SnapshotState(r.text(name))
		case "statusmessage":
			s.StateMessage = r.str(name)
		case "storagetier":
			s.StorageTier = ec2types.StorageTier(r.text(name))
		case "tagset":
			decodeTags(r, name, &s.Tags)
		case "transfertype":
			s.TransferType = ec2types.TransferType(r.text(name))
		case "volumeid":
			s.VolumeId = r.str(name)
		case "volumesize":
			s.VolumeSize = r.int32(name)
		default:
			r.skip(name)
		}
	}
}

func decodeTags(r *xmlReader, parent []byte, tags *[]ec2types.Tag) {
	if *tags == nil {
		*tags = make([]ec2types.Tag, 0)
	}
	for r.child(parent) {
		if string(r.lower) != "item" {
			r.skip(r.name)
			continue
		}
		item := r.name
		var t ec2types.Tag
		for r.child(item) { // complete
			name := r.name
			switch string(r.lower) {
			case "key":
				t.Key = r.common(name)
			case "value":
				t.Value = r.common(name)
			default:
				r.skip(name)
			}
		}
		*tags = append(*tags, t)
	}
}

func decodeDescribeInstances(r *xmlReader) *ec2.DescribeInstancesOutput {
	out := &ec2.DescribeInstancesOutput{}
	decodeRoot(r, func(name []byte) { // complete
		switch string(r.lower) {
		case "nexttoken":
			out.NextToken = r.str(name)
		case "reservationset":
			if out.Reservations == nil {
				out.Reservations = make([]ec2types.Reservation, 0)
			}
			for r.child(name) {
				if string(r.lower) != "item" {
					r.skip(r.name)
					continue
				}
				var res ec2types.Reservation
				decodeReservation(r, r.name, &res)
				out.Reservations = append(out.Reservations, res)
			}
		default:
			r.skip(name)
		}
	})
	return out
}

func decodeReservation(r *xmlReader, parent []byte, res *ec2types.Reservation) { // complete
	for r.child(parent) {
		name := r.name
		switch string(r.lower) {
		case "groupset":
			decodeGroups(r, name, &res.Groups)
		case "instancesset":
			if res.Instances == nil {
				res.Instances = make([]ec2types.Instance, 0)
			}
			for r.child(name) {
				if string(r.lower) != "item" {
					r.skip(r.name)
					continue
				}
				var in ec2types.Instance
				decodeInstance(r, r.name, &in)
				res.Instances = append(res.Instances, in)
			}
		case "ownerid":
			res.OwnerId = r.common(name)
		case "requesterid":
			res.RequesterId = r.common(name)
		case "reservationid":
			res.ReservationId = r.str(name)
		default:
			r.skip(name)
		}
	}
}

func decodeGroups(r *xmlReader, parent []byte, groups *[]ec2types.GroupIdentifier) {
	if *groups == nil {
		*groups = make([]ec2types.GroupIdentifier, 0)
	}
	for r.child(parent) {
		if string(r.lower) != "item" {
			r.skip(r.name)
			continue
		}
		item := r.name
		var g ec2types.GroupIdentifier
		for r.child(item) { // complete
			name := r.name
			switch string(r.lower) {
			case "groupid":
				g.GroupId = r.common(name)
			case "groupname":
				g.GroupName = r.common(name)
			default:
				r.skip(name)
			}
		}
		*groups = append(*groups, g)
	}
}

// decodeInstance decodes every member of an instance but four rare lists (elastic GPU and
// inference accelerator associations, licenses, secondary interfaces), which send the body to
// the SDK.
func decodeInstance(r *xmlReader, parent []byte, in *ec2types.Instance) {
	for r.child(parent) {
		name := r.name
		switch string(r.lower) {
		case "amilaunchindex":
			in.AmiLaunchIndex = r.int32(name)
		case "architecture":
			in.Architecture = ec2types.ArchitectureValues(r.text(name))
		case "blockdevicemapping":
			decodeBlockDevices(r, name, &in.BlockDeviceMappings)
		case "bootmode":
			in.BootMode = ec2types.BootModeValues(r.text(name))
		case "capacityblockid":
			in.CapacityBlockId = r.str(name)
		case "capacityreservationid":
			in.CapacityReservationId = r.str(name)
		case "clienttoken":
			in.ClientToken = r.str(name)
		case "currentinstancebootmode":
			in.CurrentInstanceBootMode = ec2types.InstanceBootModeValues(r.text(name))
		case "ebsoptimized":
			in.EbsOptimized = r.bool(name)
		case "enasupport":
			in.EnaSupport = r.bool(name)
		case "hypervisor":
			in.Hypervisor = ec2types.HypervisorType(r.text(name))
		case "iaminstanceprofile":
			if in.IamInstanceProfile == nil {
				in.IamInstanceProfile = &ec2types.IamInstanceProfile{}
			}
			p := in.IamInstanceProfile
			for r.child(name) { // complete
				n := r.name
				switch string(r.lower) {
				case "arn":
					p.Arn = r.common(n)
				case "id":
					p.Id = r.common(n)
				default:
					r.skip(n)
				}
			}
		case "imageid":
			in.ImageId = r.common(name)
		case "instanceid":
			in.InstanceId = r.str(name)
		case "instancelifecycle":
			in.InstanceLifecycle = ec2types.InstanceLifecycleType(r.text(name))
		case "instancetype":
			in.InstanceType = ec2types.InstanceType(r.text(name))
		case "kernelid":
			in.KernelId = r.common(name)
		case "keyname":
			in.KeyName = r.common(name)
		case "launchtime":
			in.LaunchTime = r.time(name)
		case "monitoring":
			if in.Monitoring == nil {
				in.Monitoring = &ec2types.Monitoring{}
			}
			for r.child(name) { // complete
				if string(r.lower) == "state" {
					in.Monitoring.State = ec2types.MonitoringState(r.text(r.name))
				} else {
					r.skip(r.name)
				}
			}
		case "operator":
			if in.Operator == nil {
				in.Operator = &ec2types.OperatorResponse{}
			}
			decodeOperator(r, name, in.Operator)
		case "outpostarn":
			in.OutpostArn = r.common(name)
		case "placement":
			if in.Placement == nil {
				in.Placement = &ec2types.Placement{}
			}
			decodePlacement(r, name, in.Placement)
		case "platform":
			in.Platform = ec2types.PlatformValues(r.text(name))
		case "platformdetails":
			in.PlatformDetails = r.common(name)
		case "privatednsname":
			in.PrivateDnsName = r.str(name)
		case "privateipaddress":
			in.PrivateIpAddress = r.str(name)
		case "productcodes":
			decodeProductCodes(r, name, &in.ProductCodes)
		case "dnsname":
			in.PublicDnsName = r.str(name)
		case "ipaddress":
			in.PublicIpAddress = r.str(name)
		case "ipv6address":
			in.Ipv6Address = r.str(name)
		case "ramdiskid":
			in.RamdiskId = r.common(name)
		case "rootdevicename":
			in.RootDeviceName = r.common(name)
		case "rootdevicetype":
			in.RootDeviceType = ec2types.DeviceType(r.text(name))
		case "groupset":
			decodeGroups(r, name, &in.SecurityGroups)
		case "sourcedestcheck":
			in.SourceDestCheck = r.bool(name)
		case "spotinstancerequestid":
			in.SpotInstanceRequestId = r.str(name)
		case "sriovnetsupport":
			in.SriovNetSupport = r.common(name)
		case "instancestate":
			if in.State == nil {
				in.State = &ec2types.InstanceState{}
			}
			decodeInstanceState(r, name, in.State)
		case "statereason":
			if in.StateReason == nil {
				in.StateReason = &ec2types.StateReason{}
			}
			for r.child(name) { // complete
				n := r.name
				switch string(r.lower) {
				case "code":
					in.StateReason.Code = r.common(n)
				case "message":
					in.StateReason.Message = r.common(n)
				default:
					r.skip(n)
				}
			}
		case "reason":
			in.StateTransitionReason = r.common(name)
		case "subnetid":
			in.SubnetId = r.common(name)
		case "tagset":
			decodeTags(r, name, &in.Tags)
		case "tpmsupport":
			in.TpmSupport = r.common(name)
		case "usageoperation":
			in.UsageOperation = r.common(name)
		case "usageoperationupdatetime":
			in.UsageOperationUpdateTime = r.time(name)
		case "virtualizationtype":
			in.VirtualizationType = ec2types.VirtualizationType(r.text(name))
		case "vpcid":
			in.VpcId = r.common(name)
		default:
			if !decodeInstanceOptions(r, name, in) {
				// A member we do not decode (or an unknown one): the SDK decodes this body.
				r.bad = true
				return
			}
		}
	}
}

func decodeInstanceState(r *xmlReader, parent []byte, s *ec2types.InstanceState) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "code":
			s.Code = r.int32(name)
		case "name":
			s.Name = ec2types.InstanceStateName(r.text(name))
		default:
			r.skip(name)
		}
	}
}

func decodePlacement(r *xmlReader, parent []byte, p *ec2types.Placement) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "affinity":
			p.Affinity = r.common(name)
		case "availabilityzone":
			p.AvailabilityZone = r.common(name)
		case "availabilityzoneid":
			p.AvailabilityZoneId = r.common(name)
		case "groupid":
			p.GroupId = r.common(name)
		case "groupname":
			p.GroupName = r.common(name)
		case "hostid":
			p.HostId = r.str(name)
		case "hostresourcegrouparn":
			p.HostResourceGroupArn = r.common(name)
		case "partitionnumber":
			p.PartitionNumber = r.int32(name)
		case "spreaddomain":
			p.SpreadDomain = r.common(name)
		case "tenancy":
			p.Tenancy = ec2types.Tenancy(r.text(name))
		default:
			r.skip(name)
		}
	}
}

func decodeProductCodes(r *xmlReader, parent []byte, codes *[]ec2types.ProductCode) {
	if *codes == nil {
		*codes = make([]ec2types.ProductCode, 0)
	}
	for r.child(parent) {
		if string(r.lower) != "item" {
			r.skip(r.name)
			continue
		}
		item := r.name
		var c ec2types.ProductCode
		for r.child(item) { // complete
			name := r.name
			switch string(r.lower) {
			case "productcode":
				c.ProductCodeId = r.common(name)
			case "type":
				c.ProductCodeType = ec2types.ProductCodeValues(r.text(name))
			default:
				r.skip(name)
			}
		}
		*codes = append(*codes, c)
	}
}

func decodeBlockDevices(r *xmlReader, parent []byte, bds *[]ec2types.InstanceBlockDeviceMapping) {
	if *bds == nil {
		*bds = make([]ec2types.InstanceBlockDeviceMapping, 0)
	}
	for r.child(parent) {
		if string(r.lower) != "item" {
			r.skip(r.name)
			continue
		}
		item := r.name
		var bd ec2types.InstanceBlockDeviceMapping
		for r.child(item) { // complete
			name := r.name
			switch string(r.lower) {
			case "devicename":
				bd.DeviceName = r.common(name)
			case "ebs":
				if bd.Ebs == nil {
					bd.Ebs = &ec2types.EbsInstanceBlockDevice{}
				}
				decodeEbs(r, name, bd.Ebs)
			default:
				r.skip(name)
			}
		}
		*bds = append(*bds, bd)
	}
}

func decodeEbs(r *xmlReader, parent []byte, e *ec2types.EbsInstanceBlockDevice) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "associatedresource":
			e.AssociatedResource = r.str(name)
		case "attachtime":
			e.AttachTime = r.time(name)
		case "deleteontermination":
			e.DeleteOnTermination = r.bool(name)
		case "ebscardindex":
			e.EbsCardIndex = r.int32(name)
		case "operator":
			if e.Operator == nil {
				e.Operator = &ec2types.OperatorResponse{}
			}
			decodeOperator(r, name, e.Operator)
		case "status":
			e.Status = ec2types.AttachmentStatus(r.text(name))
		case "volumeid":
			e.VolumeId = r.str(name)
		case "volumeownerid":
			e.VolumeOwnerId = r.common(name)
		default:
			r.skip(name)
		}
	}
}

func decodeOperator(r *xmlReader, parent []byte, o *ec2types.OperatorResponse) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "hiddenbydefault":
			o.HiddenByDefault = r.bool(name)
		case "managed":
			o.Managed = r.bool(name)
		case "principal":
			o.Principal = r.common(name)
		default:
			r.skip(name)
		}
	}
}

func decodeDescribeInstanceStatus(r *xmlReader) *ec2.DescribeInstanceStatusOutput {
	out := &ec2.DescribeInstanceStatusOutput{}
	decodeRoot(r, func(name []byte) { // complete
		switch string(r.lower) {
		case "nexttoken":
			out.NextToken = r.str(name)
		case "instancestatusset":
			if out.InstanceStatuses == nil {
				out.InstanceStatuses = make([]ec2types.InstanceStatus, 0)
			}
			for r.child(name) {
				if string(r.lower) != "item" {
					r.skip(r.name)
					continue
				}
				var s ec2types.InstanceStatus
				decodeInstanceStatus(r, r.name, &s)
				out.InstanceStatuses = append(out.InstanceStatuses, s)
			}
		default:
			r.skip(name)
		}
	})
	return out
}

// decodeInstanceStatus decodes all but the application, attached EBS and performance status
// summaries (which send the body to the SDK).
func decodeInstanceStatus(r *xmlReader, parent []byte, s *ec2types.InstanceStatus) {
	for r.child(parent) {
		name := r.name
		switch string(r.lower) {
		case "availabilityzone":
			s.AvailabilityZone = r.common(name)
		case "availabilityzoneid":
			s.AvailabilityZoneId = r.common(name)
		case "eventsset":
			decodeStatusEvents(r, name, &s.Events)
		case "instanceid":
			s.InstanceId = r.str(name)
		case "instancestate":
			if s.InstanceState == nil {
				s.InstanceState = &ec2types.InstanceState{}
			}
			decodeInstanceState(r, name, s.InstanceState)
		case "instancestatus":
			if s.InstanceStatus == nil {
				s.InstanceStatus = &ec2types.InstanceStatusSummary{}
			}
			decodeStatusSummary(r, name, s.InstanceStatus)
		case "operator":
			if s.Operator == nil {
				s.Operator = &ec2types.OperatorResponse{}
			}
			decodeOperator(r, name, s.Operator)
		case "outpostarn":
			s.OutpostArn = r.common(name)
		case "systemstatus":
			if s.SystemStatus == nil {
				s.SystemStatus = &ec2types.InstanceStatusSummary{}
			}
			decodeStatusSummary(r, name, s.SystemStatus)
		default:
			r.bad = true
			return
		}
	}
}

func decodeStatusSummary(r *xmlReader, parent []byte, s *ec2types.InstanceStatusSummary) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "details":
			if s.Details == nil {
				s.Details = make([]ec2types.InstanceStatusDetails, 0)
			}
			for r.child(name) {
				if string(r.lower) != "item" {
					r.skip(r.name)
					continue
				}
				item := r.name
				var d ec2types.InstanceStatusDetails
				for r.child(item) { // complete
					n := r.name
					switch string(r.lower) {
					case "impairedsince":
						d.ImpairedSince = r.time(n)
					case "name":
						d.Name = ec2types.StatusName(r.text(n))
					case "status":
						d.Status = ec2types.StatusType(r.text(n))
					default:
						r.skip(n)
					}
				}
				s.Details = append(s.Details, d)
			}
		case "status":
			s.Status = ec2types.SummaryStatus(r.text(name))
		default:
			r.skip(name)
		}
	}
}

func decodeStatusEvents(r *xmlReader, parent []byte, events *[]ec2types.InstanceStatusEvent) {
	if *events == nil {
		*events = make([]ec2types.InstanceStatusEvent, 0)
	}
	for r.child(parent) {
		if string(r.lower) != "item" {
			r.skip(r.name)
			continue
		}
		item := r.name
		var e ec2types.InstanceStatusEvent
		for r.child(item) { // complete
			name := r.name
			switch string(r.lower) {
			case "code":
				e.Code = ec2types.EventCode(r.text(name))
			case "description":
				e.Description = r.str(name)
			case "instanceeventid":
				e.InstanceEventId = r.str(name)
			case "notafter":
				e.NotAfter = r.time(name)
			case "notbefore":
				e.NotBefore = r.time(name)
			case "notbeforedeadline":
				e.NotBeforeDeadline = r.time(name)
			default:
				r.skip(name)
			}
		}
		*events = append(*events, e)
	}
}

// decodeList decodes an EC2 list (<item> elements) into list, as the SDK's list decoders do.
func decodeList[T any](r *xmlReader, parent []byte, list *[]T, item func(r *xmlReader, name []byte, v *T)) {
	if *list == nil {
		*list = make([]T, 0)
	}
	for r.child(parent) {
		if string(r.lower) != "item" {
			r.skip(r.name)
			continue
		}
		var v T
		item(r, r.name, &v)
		*list = append(*list, v)
	}
}

// into returns *p, allocating it first: a repeated structure element fills the same one.
func into[T any](p **T) *T {
	if *p == nil {
		*p = new(T)
	}
	return *p
}

// decodeInstanceOptions decodes the small option structures of an instance; it reports false
// for a name that is not one of them.
func decodeInstanceOptions(r *xmlReader, name []byte, in *ec2types.Instance) bool {
	switch string(r.lower) {
	case "networkinterfaceset":
		decodeList(r, name, &in.NetworkInterfaces, decodeNetworkInterface)
	case "cpuoptions":
		o := into(&in.CpuOptions)
		for r.child(name) { // complete
			n := r.name
			switch string(r.lower) {
			case "amdsevsnp":
				o.AmdSevSnp = ec2types.AmdSevSnpSpecification(r.text(n))
			case "corecount":
				o.CoreCount = r.int32(n)
			case "nestedvirtualization":
				o.NestedVirtualization = ec2types.NestedVirtualizationSpecification(r.text(n))
			case "threadspercore":
				o.ThreadsPerCore = r.int32(n)
			default:
				r.skip(n)
			}
		}
	case "capacityreservationspecification":
		o := into(&in.CapacityReservationSpecification)
		for r.child(name) { // complete
			n := r.name
			switch string(r.lower) {
			case "capacityreservationpreference":
				o.CapacityReservationPreference = ec2types.CapacityReservationPreference(r.text(n))
			case "capacityreservationtarget":
				t := into(&o.CapacityReservationTarget)
				for r.child(n) { // complete
					m := r.name
					switch string(r.lower) {
					case "capacityreservationid":
						t.CapacityReservationId = r.str(m)
					case "capacityreservationresourcegrouparn":
						t.CapacityReservationResourceGroupArn = r.common(m)
					default:
						r.skip(m)
					}
				}
			default:
				r.skip(n)
			}
		}
	case "hibernationoptions":
		o := into(&in.HibernationOptions)
		for r.child(name) { // complete
			if string(r.lower) == "configured" {
				o.Configured = r.bool(r.name)
			} else {
				r.skip(r.name)
			}
		}
	case "enclaveoptions":
		o := into(&in.EnclaveOptions)
		for r.child(name) { // complete
			if string(r.lower) == "enabled" {
				o.Enabled = r.bool(r.name)
			} else {
				r.skip(r.name)
			}
		}
	case "metadataoptions":
		o := into(&in.MetadataOptions)
		for r.child(name) { // complete
			n := r.name
			switch string(r.lower) {
			case "httpendpoint":
				o.HttpEndpoint = ec2types.InstanceMetadataEndpointState(r.text(n))
			case "httpprotocolipv6":
				o.HttpProtocolIpv6 = ec2types.InstanceMetadataProtocolState(r.text(n))
			case "httpputresponsehoplimit":
				o.HttpPutResponseHopLimit = r.int32(n)
			case "httptokens":
				o.HttpTokens = ec2types.HttpTokensState(r.text(n))
			case "instancemetadatatags":
				o.InstanceMetadataTags = ec2types.InstanceMetadataTagsState(r.text(n))
			case "state":
				o.State = ec2types.InstanceMetadataOptionsState(r.text(n))
			default:
				r.skip(n)
			}
		}
	case "maintenanceoptions":
		o := into(&in.MaintenanceOptions)
		for r.child(name) { // complete
			n := r.name
			switch string(r.lower) {
			case "autorecovery":
				o.AutoRecovery = ec2types.InstanceAutoRecoveryState(r.text(n))
			case "rebootmigration":
				o.RebootMigration = ec2types.InstanceRebootMigrationState(r.text(n))
			default:
				r.skip(n)
			}
		}
	case "privatednsnameoptions":
		o := into(&in.PrivateDnsNameOptions)
		for r.child(name) { // complete
			n := r.name
			switch string(r.lower) {
			case "enableresourcenamednsaaaarecord":
				o.EnableResourceNameDnsAAAARecord = r.bool(n)
			case "enableresourcenamednsarecord":
				o.EnableResourceNameDnsARecord = r.bool(n)
			case "hostnametype":
				o.HostnameType = ec2types.HostnameType(r.text(n))
			default:
				r.skip(n)
			}
		}
	case "networkperformanceoptions":
		o := into(&in.NetworkPerformanceOptions)
		for r.child(name) { // complete
			if string(r.lower) == "bandwidthweighting" {
				o.BandwidthWeighting = ec2types.InstanceBandwidthWeighting(r.text(r.name))
			} else {
				r.skip(r.name)
			}
		}
	default:
		return false
	}
	return true
}

func decodeNetworkInterface(r *xmlReader, parent []byte, ni *ec2types.InstanceNetworkInterface) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "association":
			decodeAssociation(r, name, into(&ni.Association))
		case "attachment":
			decodeAttachment(r, name, into(&ni.Attachment))
		case "connectiontrackingconfiguration":
			c := into(&ni.ConnectionTrackingConfiguration)
			for r.child(name) { // complete
				n := r.name
				switch string(r.lower) {
				case "tcpestablishedtimeout":
					c.TcpEstablishedTimeout = r.int32(n)
				case "udpstreamtimeout":
					c.UdpStreamTimeout = r.int32(n)
				case "udptimeout":
					c.UdpTimeout = r.int32(n)
				default:
					r.skip(n)
				}
			}
		case "description":
			ni.Description = r.common(name)
		case "groupset":
			decodeGroups(r, name, &ni.Groups)
		case "interfacetype":
			ni.InterfaceType = r.common(name)
		case "ipv4prefixset":
			decodeList(r, name, &ni.Ipv4Prefixes, func(r *xmlReader, parent []byte, p *ec2types.InstanceIpv4Prefix) {
				for r.child(parent) { // complete
					if string(r.lower) == "ipv4prefix" {
						p.Ipv4Prefix = r.str(r.name)
					} else {
						r.skip(r.name)
					}
				}
			})
		case "ipv6addressesset":
			decodeList(r, name, &ni.Ipv6Addresses, func(r *xmlReader, parent []byte, a *ec2types.InstanceIpv6Address) {
				for r.child(parent) { // complete
					n := r.name
					switch string(r.lower) {
					case "ipv6address":
						a.Ipv6Address = r.str(n)
					case "isprimaryipv6":
						a.IsPrimaryIpv6 = r.bool(n)
					default:
						r.skip(n)
					}
				}
			})
		case "ipv6prefixset":
			decodeList(r, name, &ni.Ipv6Prefixes, func(r *xmlReader, parent []byte, p *ec2types.InstanceIpv6Prefix) {
				for r.child(parent) { // complete
					if string(r.lower) == "ipv6prefix" {
						p.Ipv6Prefix = r.str(r.name)
					} else {
						r.skip(r.name)
					}
				}
			})
		case "macaddress":
			ni.MacAddress = r.str(name)
		case "networkinterfaceid":
			ni.NetworkInterfaceId = r.str(name)
		case "operator":
			decodeOperator(r, name, into(&ni.Operator))
		case "ownerid":
			ni.OwnerId = r.common(name)
		case "privatednsname":
			ni.PrivateDnsName = r.str(name)
		case "privateipaddress":
			ni.PrivateIpAddress = r.str(name)
		case "privateipaddressesset":
			decodeList(r, name, &ni.PrivateIpAddresses, func(r *xmlReader, parent []byte, a *ec2types.InstancePrivateIpAddress) {
				for r.child(parent) { // complete
					n := r.name
					switch string(r.lower) {
					case "association":
						decodeAssociation(r, n, into(&a.Association))
					case "primary":
						a.Primary = r.bool(n)
					case "privatednsname":
						a.PrivateDnsName = r.str(n)
					case "privateipaddress":
						a.PrivateIpAddress = r.str(n)
					default:
						r.skip(n)
					}
				}
			})
		case "sourcedestcheck":
			ni.SourceDestCheck = r.bool(name)
		case "status":
			ni.Status = ec2types.NetworkInterfaceStatus(r.text(name))
		case "subnetid":
			ni.SubnetId = r.common(name)
		case "vpcid":
			ni.VpcId = r.common(name)
		default:
			r.skip(name)
		}
	}
}

func decodeAssociation(r *xmlReader, parent []byte, a *ec2types.InstanceNetworkInterfaceAssociation) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "carrierip":
			a.CarrierIp = r.str(name)
		case "customerownedip":
			a.CustomerOwnedIp = r.str(name)
		case "ipownerid":
			a.IpOwnerId = r.common(name)
		case "publicdnsname":
			a.PublicDnsName = r.str(name)
		case "publicip":
			a.PublicIp = r.str(name)
		default:
			r.skip(name)
		}
	}
}

func decodeAttachment(r *xmlReader, parent []byte, a *ec2types.InstanceNetworkInterfaceAttachment) {
	for r.child(parent) { // complete
		name := r.name
		switch string(r.lower) {
		case "attachmentid":
			a.AttachmentId = r.str(name)
		case "attachtime":
			a.AttachTime = r.time(name)
		case "deleteontermination":
			a.DeleteOnTermination = r.bool(name)
		case "deviceindex":
			a.DeviceIndex = r.int32(name)
		case "enaqueuecount":
			a.EnaQueueCount = r.int32(name)
		case "enasrdspecification":
			s := into(&a.EnaSrdSpecification)
			for r.child(name) { // complete
				n := r.name
				switch string(r.lower) {
				case "enasrdenabled":
					s.EnaSrdEnabled = r.bool(n)
				case "enasrdudpspecification":
					u := into(&s.EnaSrdUdpSpecification)
					for r.child(n) { // complete
						if string(r.lower) == "enasrdudpenabled" {
							u.EnaSrdUdpEnabled = r.bool(r.name)
						} else {
							r.skip(r.name)
						}
					}
				default:
					r.skip(n)
				}
			}
		case "networkcardindex":
			a.NetworkCardIndex = r.int32(name)
		case "status":
			a.Status = ec2types.AttachmentStatus(r.text(name))
		default:
			r.skip(name)
		}
	}
}
