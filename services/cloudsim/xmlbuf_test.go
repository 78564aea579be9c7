package cloudsim

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHandWrittenInstanceXMLEqualsEncodingXML(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := &instance{ID: "i-0123456789abcdef0", Account: "111111111111", Region: "us-east-1", AZ: "us-east-1a", State: "stopped",
		StateSince: now, LaunchTime: now, OS: "windows-server-2022", InstanceType: "m5.large", ImageID: "ami-1", PrivateIP: "10.0.0.1",
		Tags:    map[string]string{"Name": "a<b>&\"c\"", "PatchWave": "1"},
		Volumes: []*volume{{ID: "vol-1", Device: "/dev/sda1", SizeGiB: 30, AttachTime: now}, {ID: "vol-2", Device: "/dev/sdf", AttachTime: now}}}
	resp := &describeInstancesResponse{ec2Meta: ec2Meta{Xmlns: ec2Namespace, RequestID: "req-1"}, NextToken: "tok",
		Reservations: []ec2Reservation{{ReservationID: "r-1", OwnerID: "111111111111", Instances: []ec2Instance{instanceXML(in)}}}}
	want, err := xml.Marshal(resp)
	require.NoError(t, err)
	require.Equal(t, xml.Header+string(want), string(resp.rawXML()))
}

// rawXMLer is a response with a hand-written XML writer.
type rawXMLer interface {
	rawXML() []byte
	setMeta(string)
}

func TestHandWrittenResponsesEqualEncodingXML(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	snap := &snapshot{ID: "snap-0123456789abcdef0", Account: "111111111111", VolumeID: "vol-1", VolumeSize: 30,
		Description: "pre-patch <run>\n& \"x\"", Tags: map[string]string{"run": "r&1", "tenant": "acme"}, Start: now,
		EndAt: now.Add(time.Minute), Final: "error"}
	bare := &snapshot{ID: "snap-1", Account: "111111111111", VolumeID: "vol-2", Start: now, EndAt: now, Final: "completed"}
	cases := map[string]rawXMLer{
		"describe-snapshots": &describeSnapshotsResponse{NextToken: "tok",
			Snapshots: []ec2Snapshot{snapshotXML(snap, now.Add(2*time.Minute), nil), snapshotXML(snap, now, nil), snapshotXML(bare, now, nil)}},
		"describe-snapshots-empty": &describeSnapshotsResponse{Snapshots: []ec2Snapshot{}},
		"create-snapshots": &createSnapshotsResponse{Snapshots: []ec2SnapshotInfo{
			{SnapshotID: "snap-1", VolumeID: "vol-1", State: "pending", StartTime: xmlTime(now), Progress: "0%", OwnerID: "1",
				VolumeSize: 8, Description: "a<b", Tags: ec2Tags(snap.Tags)},
			{SnapshotID: "snap-2", VolumeID: "vol-2", State: "pending", StartTime: xmlTime(now), Progress: "0%", OwnerID: "1", Tags: ec2Tags(nil)}}},
		"create-snapshots-empty": &createSnapshotsResponse{Snapshots: []ec2SnapshotInfo{}},
		"describe-instance-status": &describeInstanceStatusResponse{NextToken: "n", Statuses: []ec2InstanceStatus{
			{InstanceID: "i-1", AvailabilityZone: "us-east-1a", State: ec2State{16, "running"}, SystemStatus: statusSummary("ok"),
				InstanceStatus: statusSummary("impaired")},
			{InstanceID: "i-2", AvailabilityZone: "us-east-1b", State: ec2State{80, "stopped"}, SystemStatus: statusSummary("not-applicable"),
				InstanceStatus: statusSummary("not-applicable")}}},
		"describe-instance-status-empty": &describeInstanceStatusResponse{Statuses: []ec2InstanceStatus{}},
		"create-tags":                    ec2Return("CreateTags"),
	}
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			resp.setMeta("req-" + name)
			want, err := xml.Marshal(resp)
			require.NoError(t, err)
			require.Equal(t, xml.Header+string(want), string(resp.rawXML()))
		})
	}
}

// BenchmarkSnapshotsXML renders a DescribeSnapshots page of 200 snapshots (a tracker's batched
// describe) with encoding/xml, as before, and with the hand-written writer.
func BenchmarkSnapshotsXML(b *testing.B) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	resp := &describeSnapshotsResponse{ec2Meta: ec2Meta{Xmlns: ec2Namespace, RequestID: "req-1"}}
	for i := range 200 {
		s := &snapshot{ID: "snap-0123456789abcdef" + strconv.Itoa(i%10), Account: "111111111111", VolumeID: "vol-1", VolumeSize: 30,
			Description: "pre-patch snapshot", Tags: map[string]string{"patchwave:run": "run-1", "patchwave:tenant": "acme",
				"patchwave:instance": "i-0123456789abcdef0"}, Start: now, EndAt: now.Add(time.Minute), Final: "completed"}
		resp.Snapshots = append(resp.Snapshots, snapshotXML(s, now.Add(2*time.Minute), nil))
	}
	b.Run("encoding-xml", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := xml.Marshal(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = resp.rawXML()
		}
	})
}

func TestInstanceWrittenFromStateEqualsInstanceXML(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.FixedZone("x", 3600))
	base := instance{ID: "i-0123456789abcdef0", Account: "111111111111", Region: "us-east-1", AZ: "us-east-1a",
		StateSince: now, LaunchTime: now, OS: "amazon-linux-2023", InstanceType: "t3.micro", ImageID: "ami-1", PrivateIP: "10.1.2.3",
		Volumes: []*volume{{ID: "vol-1", Device: "/dev/xvda", SizeGiB: 8, AttachTime: now}, {ID: "vol-2", Device: "/dev/sdf", AttachTime: now.Add(time.Hour)}}}
	with := func(f func(in *instance)) *instance {
		in := base
		f(&in)
		return &in
	}
	cases := map[string]*instance{
		"running linux without tags": with(func(in *instance) { in.State = "running" }),
		"running with tags to escape": with(func(in *instance) {
			in.State = "running"
			in.Tags = map[string]string{"Name": "a<b>&\"c\"", "PatchWave": "1", "émoji": "\x01\u00e9", "OSFamily": "x"}
		}),
		"stopped windows":       with(func(in *instance) { in.State, in.OS = "stopped", "windows-server-2022" }),
		"stopping":              with(func(in *instance) { in.State = "stopping" }),
		"terminated":            with(func(in *instance) { in.State = "terminated" }),
		"no volumes, odd ip":    with(func(in *instance) { in.State, in.Volumes, in.PrivateIP = "pending", nil, "10.0.0.<1>" }),
		"unknown os, many tags": with(func(in *instance) { in.State, in.OS = "running", "plan9"; in.Tags = manyTags(40) }),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var want, got xmlBuf
			x := instanceXML(in)
			want.writeInstance(&x)
			got.writeInstanceOf(in)
			require.Equal(t, want.String(), got.String())

			want.Reset()
			got.Reset()
			want.text("reservation", "r-"+hashHex(7, 17, "reservation", in.ID))
			got.writeReservationOf(7, in)
			require.Contains(t, got.String(), "<reservationId>"+want.String()[len("<reservation>"):len("<reservation>")+19]+"</reservationId>")
		})
	}
}

func manyTags(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m["k"+strconv.Itoa(i)] = strconv.Itoa(i * i)
	}
	return m
}

// TestXMLTextIsEncodingXMLEscapeText: an element written by xmlBuf.text holds its value as
// xml.EscapeText writes it, for plain text (the fast path) and for everything that needs
// escaping: the five XML characters, control characters, non-ASCII and invalid UTF-8.
func TestXMLTextIsEncodingXMLEscapeText(t *testing.T) {
	for _, s := range jsonStringCases() {
		t.Run(strconv.Quote(s), func(t *testing.T) {
			var b xmlBuf
			b.WriteString("<r>")
			b.text("name", s)
			var want bytes.Buffer
			require.NoError(t, xml.EscapeText(&want, []byte(s)))
			require.Equal(t, "<r><name>"+want.String()+"</name>", b.String())
		})
	}
}
