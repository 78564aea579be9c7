package cloudsim

import (
	"encoding/xml"
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
